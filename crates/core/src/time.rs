//! Wall-clock helpers; only proposers read the clock.

use quorumhub_state::Millis;

pub fn now_ms() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as Millis)
        .unwrap_or(0)
}

/// JupyterHub's timestamp format: ISO 8601 in UTC with microseconds and `Z`.
pub fn iso(ms: Millis) -> String {
    chrono::DateTime::from_timestamp_millis(ms as i64)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

#[cfg(test)]
mod tests {
    #[test]
    fn iso_matches_jupyterhub() {
        assert_eq!(super::iso(1_700_000_000_123), "2023-11-14T22:13:20.123000Z");
    }
}
