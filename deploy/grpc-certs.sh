#!/usr/bin/env bash
# Makes the certificates for mutual TLS on gRPC (--grpc-tls-cert/-key/-ca):
# a CA (once) and, signed by it, one certificate per NAME for that DNS name,
# usable as server and client. Existing files are kept.
#
# Usage: deploy/grpc-certs.sh DIR NAME...
#   DIR/ca.pem, DIR/ca-key.pem          the CA (keep ca-key.pem private)
#   DIR/NAME.pem, DIR/NAME-key.pem      each NAME's certificate and key
set -euo pipefail
die() { echo "grpc-certs: $*" >&2; exit 1; }
[ $# -ge 2 ] || die "usage: deploy/grpc-certs.sh DIR NAME..."
command -v openssl >/dev/null || die "openssl is required (apt-get install openssl)"
dir=$1; shift
(umask 077; mkdir -p "$dir")
cd "$dir"
umask 077
if [ ! -f ca.pem ] || [ ! -f ca-key.pem ]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout ca-key.pem -out ca.pem -days 3650 -subj "/CN=quorumhub gRPC CA" \
    >/dev/null 2>&1 || die "openssl could not make the CA"
fi
for name in "$@"; do
  [ -f "$name.pem" ] && [ -f "$name-key.pem" ] && continue
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$name-key.pem" -out "$name.csr" -subj "/CN=$name" >/dev/null 2>&1 \
    || die "openssl could not make the key of $name"
  printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=DNS:%s\n' "$name" >"$name.ext"
  openssl x509 -req -in "$name.csr" -CA ca.pem -CAkey ca-key.pem -CAcreateserial \
    -days 825 -out "$name.pem" -extfile "$name.ext" >/dev/null 2>&1 \
    || die "openssl could not sign the certificate of $name"
  rm -f "$name.csr" "$name.ext"
  openssl verify -CAfile ca.pem "$name.pem" >/dev/null || die "$name.pem does not verify against ca.pem"
done
# Certificates are public; keys stay mode 600.
chmod 644 ca.pem "${@/%/.pem}"
chmod 600 ca-key.pem "${@/%/-key.pem}"
