//! The key of a listen, as the primary's Node line builds it from a worker's
//! `queryServer`, and the backlog the worker asks for.

use serde_json::Value;

use super::listen;

/// How the primary keys a worker's listen, which differs by Node line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyRule {
  /// Node 20: `${address}:${port}:${addressType}:${fd}:${index}`, so a
  /// worker's n-th listen only ever shares with other workers' n-th.
  WithIndex,
  /// Node 22 and later (nodejs/node#60141): the worker's listen `index` only
  /// for port 0, so any listen on a fixed address shares its socket.
  IndexOnPortZero,
}

impl KeyRule {
  /// The rule of the Node major version the primary runs on.
  pub fn for_node_major(major: u32) -> Self {
    if major >= 22 {
      KeyRule::IndexOnPortZero
    } else {
      KeyRule::WithIndex
    }
  }
}

/// `key` as the primary's Node line builds it (see `KeyRule`).
pub(crate) fn handle_key(msg: &Value, rule: KeyRule) -> String {
  let part = |name: &str| match msg.get(name) {
    None => "undefined".to_string(),
    Some(Value::String(s)) => s.clone(),
    Some(v) => v.to_string(),
  };
  let key = format!(
    "{}:{}:{}:{}",
    part("address"),
    part("port"),
    part("addressType"),
    part("fd"),
  );
  // As Node 22+: `message.port === 0` appends the index (a number 0 only).
  let port_zero = msg.get("port").and_then(Value::as_f64) == Some(0.0);
  if rule == KeyRule::WithIndex || port_zero {
    format!("{key}:{}", part("index"))
  } else {
    key
  }
}

/// The listen backlog a query asks for, as Node's `backlog || 511`: a worker
/// that gave none sends 0, `false` or nothing (listen(0) would queue one).
pub(crate) fn backlog(msg: &Value) -> i32 {
  msg["backlog"]
    .as_i64()
    .and_then(|b| i32::try_from(b).ok())
    .filter(|&b| b > 0)
    .unwrap_or(listen::DEFAULT_BACKLOG)
}

#[cfg(test)]
mod tests {
  use super::*;
  use serde_json::json;

  #[test]
  fn backlog_defaults_like_node() {
    assert_eq!(backlog(&json!({"backlog": 0})), 511);
    assert_eq!(backlog(&json!({"backlog": false})), 511);
    assert_eq!(backlog(&json!({"backlog": -1})), 511);
    assert_eq!(backlog(&json!({})), 511);
    assert_eq!(backlog(&json!({"backlog": 64})), 64);
  }

  #[test]
  fn key_matches_nodes_template() {
    let fixed = json!({"address": null, "port": 3000, "addressType": 4, "index": 1});
    let zero = json!({"address": "::1", "port": 0, "addressType": 6, "fd": -1, "index": 2});
    let pipe = json!({"address": "/tmp/s", "port": -1, "addressType": -1, "fd": -1, "index": 3});
    // Node 20: always with the index.
    let rule = KeyRule::for_node_major(20);
    assert_eq!(handle_key(&fixed, rule), "null:3000:4:undefined:1");
    assert_eq!(handle_key(&zero, rule), "::1:0:6:-1:2");
    assert_eq!(handle_key(&pipe, rule), "/tmp/s:-1:-1:-1:3");
    // Node 22 and later: the index only for port 0.
    for major in [22, 24, 26] {
      let rule = KeyRule::for_node_major(major);
      assert_eq!(handle_key(&fixed, rule), "null:3000:4:undefined");
      assert_eq!(handle_key(&zero, rule), "::1:0:6:-1:2");
      assert_eq!(handle_key(&pipe, rule), "/tmp/s:-1:-1:-1");
    }
  }
}
