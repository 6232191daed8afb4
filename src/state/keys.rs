//! Access keys: who may call the API, replicated so that every node verifies alike.
//!
//! Keys: `key/<access key id>` → the key; `keyname/<name>` → its access key id.

use super::{decode, encode, KvError, KvRead, Outcome, Rejection, Space, Txn};
use crate::model::AccessKey;

fn key(access_key_id: &str) -> Vec<u8> {
    format!("key/{access_key_id}").into_bytes()
}

fn name_key(name: &str) -> Vec<u8> {
    format!("keyname/{name}").into_bytes()
}

/// Stores a new key, unless its name or id is taken.
pub(super) fn create(txn: &mut Txn<'_>, new: &AccessKey) -> Result<Outcome, KvError> {
    if txn.get(Space::Data, &name_key(&new.name))?.is_some() || get(txn, &new.access_key_id)?.is_some() {
        return Ok(Outcome::Rejected(Rejection::KeyNameInUse));
    }
    txn.put(Space::Data, key(&new.access_key_id), encode(new));
    txn.put(Space::Data, name_key(&new.name), new.access_key_id.as_bytes().to_vec());
    Ok(Outcome::Done)
}

/// Deletes the key named `name` (or whose access key id is `name`).
pub(super) fn revoke(txn: &mut Txn<'_>, name: &str) -> Result<Outcome, KvError> {
    let found = match get(txn, name)? {
        Some(k) => Some(k),
        None => match txn.get(Space::Data, &name_key(name))? {
            Some(id) => get(txn, &String::from_utf8_lossy(&id))?,
            None => None,
        },
    };
    let Some(found) = found else {
        return Ok(Outcome::Rejected(Rejection::KeyNotFound));
    };
    txn.delete(Space::Data, key(&found.access_key_id));
    txn.delete(Space::Data, name_key(&found.name));
    Ok(Outcome::Done)
}

/// The key whose access key id is `access_key_id`.
pub fn get(kv: &dyn KvRead, access_key_id: &str) -> Result<Option<AccessKey>, KvError> {
    kv.get(Space::Data, &key(access_key_id))?
        .map(|bytes| decode(&bytes))
        .transpose()
}

/// Every key, by access key id.
pub fn list(kv: &dyn KvRead) -> Result<Vec<AccessKey>, KvError> {
    super::scan_values(kv, b"key/", b"key0")
}
