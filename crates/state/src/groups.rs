//! Groups (log format 3). A group lists its members and each member lists
//! its groups; both lists stay sorted and agree after every command.

use crate::command::{Rejection, Response};
use crate::model::Group;
use crate::names::validate_group_name;
use crate::state::{no_such_user, HubState, Outcome};

impl HubState {
    pub(crate) fn create_group(&mut self, name: &str, users: &[String]) -> Outcome {
        // Group names follow the user name rules.
        validate_group_name(name).map_err(|why| Rejection::InvalidName {
            name: name.to_string(),
            why,
        })?;
        if self.groups.contains_key(name) {
            return Err(Rejection::GroupExists {
                name: name.to_string(),
            });
        }
        self.check_users(users)?;
        self.groups.insert(
            name.to_string(),
            Group {
                name: name.to_string(),
                users: Vec::new(),
                properties: serde_json::json!({}),
            },
        );
        self.add_group_members(name, users)
    }

    pub(crate) fn delete_group(&mut self, name: &str) -> Outcome {
        let group = self
            .groups
            .remove(name)
            .ok_or_else(|| no_such_group(name))?;
        for u in &group.users {
            if let Some(user) = self.users.get_mut(u) {
                user.groups.retain(|g| g != name);
            }
        }
        Ok((Response::Done, vec![]))
    }

    pub(crate) fn add_group_members(&mut self, name: &str, users: &[String]) -> Outcome {
        if !self.groups.contains_key(name) {
            return Err(no_such_group(name));
        }
        self.check_users(users)?;
        for u in users {
            if let Some(user) = self.users.get_mut(u) {
                insert_sorted(&mut user.groups, name);
            }
            if let Some(g) = self.groups.get_mut(name) {
                insert_sorted(&mut g.users, u);
            }
        }
        self.group_response(name)
    }

    pub(crate) fn remove_group_members(&mut self, name: &str, users: &[String]) -> Outcome {
        let group = self
            .groups
            .get_mut(name)
            .ok_or_else(|| no_such_group(name))?;
        group.users.retain(|u| !users.contains(u));
        for u in users {
            if let Some(user) = self.users.get_mut(u) {
                user.groups.retain(|g| g != name);
            }
        }
        self.group_response(name)
    }

    pub(crate) fn set_group_properties(
        &mut self,
        name: &str,
        properties: &serde_json::Value,
    ) -> Outcome {
        if !properties.is_object() {
            return Err(Rejection::PropertiesNotAnObject);
        }
        let group = self
            .groups
            .get_mut(name)
            .ok_or_else(|| no_such_group(name))?;
        group.properties = properties.clone();
        self.group_response(name)
    }

    /// A deleted user leaves every group.
    pub(crate) fn leave_all_groups(&mut self, user: &str) {
        for g in self.groups.values_mut() {
            g.users.retain(|u| u != user);
        }
    }

    /// A renamed user stays in its groups under the new name.
    pub(crate) fn rename_in_groups(&mut self, from: &str, to: &str) {
        for g in self.groups.values_mut() {
            if let Some(pos) = g.users.iter().position(|u| u == from) {
                g.users.remove(pos);
                insert_sorted(&mut g.users, to);
            }
        }
    }

    fn check_users(&self, users: &[String]) -> Result<(), Rejection> {
        match users.iter().find(|u| !self.users.contains_key(*u)) {
            Some(missing) => Err(no_such_user(missing)),
            None => Ok(()),
        }
    }

    fn group_response(&self, name: &str) -> Outcome {
        let group = self.groups.get(name).ok_or_else(|| no_such_group(name))?;
        Ok((
            Response::Group {
                group: Box::new(group.clone()),
            },
            vec![],
        ))
    }

    pub fn group(&self, name: &str) -> Option<&Group> {
        self.groups.get(name)
    }
}

fn insert_sorted(list: &mut Vec<String>, item: &str) {
    if let Err(pos) = list.binary_search_by(|x| x.as_str().cmp(item)) {
        list.insert(pos, item.to_string());
    }
}

fn no_such_group(name: &str) -> Rejection {
    Rejection::NoSuchGroup {
        name: name.to_string(),
    }
}
