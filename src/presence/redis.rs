//! Presence in Redis, shared by the nodes of a cluster. Keys (after the configured prefix):
//! `presence:node:<node>` (the node's liveness, expiring `GOCHAT_PRESENCE_TTL` after its last heartbeat),
//! `presence:nodes` (a sorted set of nodes by last heartbeat, to find the dead), `presence:on:<node>` (the users
//! with sockets on a node) and `presence:user:<user>` (the nodes a user has sockets on). Each operation that
//! touches several keys is one Lua script, so it is atomic.

use async_trait::async_trait;
use redis::aio::ConnectionManager;
use redis::Script;

use super::PresenceRegistry;

pub struct RedisPresence {
    conn: ConnectionManager,
    prefix: String,
    node: String,
    ttl_secs: u64,
}

/// KEYS: none. ARGV: prefix, node, here (1/0), user.
const SET_HERE: &str = r"
local p, node, here, user = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
if here == '1' then
  redis.call('SADD', p .. 'presence:user:' .. user, node)
  redis.call('SADD', p .. 'presence:on:' .. node, user)
else
  redis.call('SREM', p .. 'presence:user:' .. user, node)
  redis.call('SREM', p .. 'presence:on:' .. node, user)
end
return 1";

/// ARGV: prefix, then user ids. Returns those with a socket on a node whose liveness key exists.
const ONLINE: &str = r"
local p = ARGV[1]
local out = {}
for i = 2, #ARGV do
  local nodes = redis.call('SMEMBERS', p .. 'presence:user:' .. ARGV[i])
  for _, n in ipairs(nodes) do
    if redis.call('EXISTS', p .. 'presence:node:' .. n) == 1 then
      table.insert(out, ARGV[i])
      break
    end
  end
end
return out";

/// ARGV: prefix, node, now (unix seconds), ttl. Refreshes the node, then claims every node not heard from for a
/// ttl (ZREM succeeds for one caller only) and removes its records; returns their users.
const HEARTBEAT: &str = r"
local p, node, now, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
redis.call('SET', p .. 'presence:node:' .. node, '1', 'EX', ttl)
redis.call('ZADD', p .. 'presence:nodes', now, node)
local out = {}
local dead = redis.call('ZRANGEBYSCORE', p .. 'presence:nodes', '-inf', now - ttl)
for _, d in ipairs(dead) do
  if d ~= node and redis.call('ZREM', p .. 'presence:nodes', d) == 1 then
    local users = redis.call('SMEMBERS', p .. 'presence:on:' .. d)
    for _, u in ipairs(users) do
      redis.call('SREM', p .. 'presence:user:' .. u, d)
      table.insert(out, u)
    end
    redis.call('DEL', p .. 'presence:on:' .. d)
  end
end
return out";

/// ARGV: prefix, node. Removes the node's records; returns its users.
const LEAVE: &str = r"
local p, node = ARGV[1], ARGV[2]
local users = redis.call('SMEMBERS', p .. 'presence:on:' .. node)
for _, u in ipairs(users) do
  redis.call('SREM', p .. 'presence:user:' .. u, node)
end
redis.call('DEL', p .. 'presence:on:' .. node, p .. 'presence:node:' .. node)
redis.call('ZREM', p .. 'presence:nodes', node)
return users";

impl RedisPresence {
    /// A registry for one node, named at random (a node that restarts is a new node; the old one's records
    /// expire with it).
    pub fn new(conn: ConnectionManager, prefix: &str, ttl: std::time::Duration) -> Self {
        let node = format!("{:016x}", rand::random::<u64>());
        Self { conn, prefix: prefix.to_string(), node, ttl_secs: ttl.as_secs().max(1) }
    }
}

fn ids(values: Vec<String>) -> Vec<i64> {
    values.into_iter().filter_map(|v| v.parse().ok()).collect()
}

#[async_trait]
impl PresenceRegistry for RedisPresence {
    async fn set_here(&self, user: i64, here: bool) -> anyhow::Result<()> {
        let mut conn = self.conn.clone();
        let _: i64 = Script::new(SET_HERE)
            .arg(&self.prefix)
            .arg(&self.node)
            .arg(if here { "1" } else { "0" })
            .arg(user)
            .invoke_async(&mut conn)
            .await?;
        Ok(())
    }

    async fn online(&self, users: &[i64]) -> anyhow::Result<Vec<i64>> {
        if users.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.conn.clone();
        let script = Script::new(ONLINE);
        let mut call = script.prepare_invoke();
        call.arg(&self.prefix);
        for u in users {
            call.arg(*u);
        }
        let found: Vec<String> = call.invoke_async(&mut conn).await?;
        Ok(ids(found))
    }

    async fn heartbeat(&self) -> anyhow::Result<Vec<i64>> {
        let mut conn = self.conn.clone();
        let now = chrono::Utc::now().timestamp();
        let found: Vec<String> = Script::new(HEARTBEAT)
            .arg(&self.prefix)
            .arg(&self.node)
            .arg(now)
            .arg(self.ttl_secs)
            .invoke_async(&mut conn)
            .await?;
        Ok(ids(found))
    }

    async fn leave(&self) -> anyhow::Result<Vec<i64>> {
        let mut conn = self.conn.clone();
        let found: Vec<String> = Script::new(LEAVE).arg(&self.prefix).arg(&self.node).invoke_async(&mut conn).await?;
        Ok(ids(found))
    }

    fn name(&self) -> &'static str {
        "redis"
    }
}
