//! SQL shared by both backends. Postgres and SQLite accept the same statements here (`$n` parameters,
//! `RETURNING`, `ON CONFLICT`), so each trait is implemented once, by macro, for each backend's pool type.
//! A backend provides `writer()` (the pool writes go through) and `reader()`, and the one fragment where the
//! dialects differ: how a JSON array parameter becomes a set of values (`ids` for integers, `texts` for strings).

/// Cursor rows per upsert statement: 4 parameters each keeps a statement far below both databases' parameter
/// limits (SQLite 32,766; Postgres 65,535).
pub(crate) const ACK_ROWS_PER_STATEMENT: usize = 1000;

/// The columns each record type is read with, in its field order; one list per record, shared by every query.
macro_rules! user_columns {
    () => {
        "id, username, nickname, sex, password_hash, token_version, created_at"
    };
}
macro_rules! message_columns {
    () => {
        "id, conversation_id, seq, from_user_id, to_user_id, group_id, kind, body, file_id, client_msg_id, created_at"
    };
}
macro_rules! file_columns {
    () => {
        "id, uploader_id, storage_key, kind, content_type, size, width, height, sha256, created_at, referenced_at"
    };
}
macro_rules! request_columns {
    () => {
        "id, from_user_id, to_user_id, message, status, created_at"
    };
}
pub(crate) use {file_columns, message_columns, request_columns, user_columns};

macro_rules! impl_sql_stores {
    ($store:ty, $db:ty, ids = $ids:literal, texts = $texts:literal, direct = $direct:expr) => {
        #[async_trait::async_trait]
        impl $crate::store::UserStore for $store {
            async fn create_user(&self, new: $crate::store::NewUser) -> $crate::store::StoreResult<$crate::store::UserRecord> {
                let now = $crate::store::now();
                sqlx::query_as(
                    concat!("INSERT INTO users (username, username_lower, nickname, sex, password_hash, token_version, created_at, updated_at)
                     VALUES ($1, $2, $3, $4, $5, 0, $6, $6)
                     RETURNING ", $crate::store::sql::user_columns!()),
                )
                .bind(&new.username)
                .bind(new.username.to_ascii_lowercase())
                .bind(&new.nickname)
                .bind(new.sex)
                .bind(&new.password_hash)
                .bind(now)
                .fetch_one(self.writer())
                .await
                .map_err($crate::store::StoreError::classify)
            }

            async fn user_by_id(&self, id: i64) -> $crate::store::StoreResult<Option<$crate::store::UserRecord>> {
                Ok(sqlx::query_as(
                    concat!("SELECT ", $crate::store::sql::user_columns!(), " FROM users WHERE id = $1"),
                )
                .bind(id)
                .fetch_optional(self.reader())
                .await?)
            }

            async fn user_by_username(&self, username_lower: &str) -> $crate::store::StoreResult<Option<$crate::store::UserRecord>> {
                Ok(sqlx::query_as(
                    concat!("SELECT ", $crate::store::sql::user_columns!(), "
                     FROM users WHERE username_lower = $1"),
                )
                .bind(username_lower)
                .fetch_optional(self.reader())
                .await?)
            }

            async fn update_profile(
                &self,
                id: i64,
                nickname: Option<&str>,
                sex: Option<i16>,
            ) -> $crate::store::StoreResult<Option<$crate::store::UserRecord>> {
                Ok(sqlx::query_as(
                    concat!("UPDATE users SET nickname = COALESCE($2, nickname), sex = COALESCE($3, sex), updated_at = $4
                     WHERE id = $1
                     RETURNING ", $crate::store::sql::user_columns!()),
                )
                .bind(id)
                .bind(nickname)
                .bind(sex)
                .bind($crate::store::now())
                .fetch_optional(self.writer())
                .await?)
            }

            async fn set_password(
                &self,
                id: i64,
                password_hash: &str,
                expected: i64,
            ) -> $crate::store::StoreResult<Option<i64>> {
                let row: Option<(i64,)> = sqlx::query_as(
                    "UPDATE users SET password_hash = $2, token_version = token_version + 1, updated_at = $3
                     WHERE id = $1 AND token_version = $4 RETURNING token_version",
                )
                .bind(id)
                .bind(password_hash)
                .bind($crate::store::now())
                .bind(expected)
                .fetch_optional(self.writer())
                .await?;
                Ok(row.map(|r| r.0))
            }

            async fn search_users(&self, prefix_lower: &str, limit: i64) -> $crate::store::StoreResult<Vec<$crate::store::UserRecord>> {
                Ok(sqlx::query_as(
                    concat!("SELECT ", $crate::store::sql::user_columns!(), "
                     FROM users WHERE username_lower LIKE $1 ESCAPE '\\' ORDER BY username_lower LIMIT $2"),
                )
                .bind($crate::store::like_prefix(prefix_lower))
                .bind(limit)
                .fetch_all(self.reader())
                .await?)
            }

            async fn create_ticket(
                &self,
                ticket_hash: &str,
                user_id: i64,
                token_version: i64,
                token_expires_at: chrono::DateTime<chrono::Utc>,
                expires_at: chrono::DateTime<chrono::Utc>,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<()> {
                // Times as Unix seconds: compared in SQL the same way on both backends.
                sqlx::query("DELETE FROM ws_tickets WHERE expires_at < $1")
                    .bind(now.timestamp())
                    .execute(self.writer())
                    .await?;
                sqlx::query(
                    "INSERT INTO ws_tickets (ticket_hash, user_id, token_version, token_expires_at, expires_at)
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(ticket_hash)
                .bind(user_id)
                .bind(token_version)
                .bind(token_expires_at.timestamp())
                .bind(expires_at.timestamp())
                .execute(self.writer())
                .await?;
                Ok(())
            }

            async fn take_ticket(
                &self,
                ticket_hash: &str,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<Option<(i64, i64, chrono::DateTime<chrono::Utc>)>> {
                let row: Option<(i64, i64, i64, i64)> = sqlx::query_as(
                    "DELETE FROM ws_tickets WHERE ticket_hash = $1
                     RETURNING user_id, token_version, token_expires_at, expires_at",
                )
                .bind(ticket_hash)
                .fetch_optional(self.writer())
                .await?;
                Ok(row.filter(|r| r.3 >= now.timestamp()).and_then(|(user, ver, token_exp, _)| {
                    chrono::DateTime::from_timestamp(token_exp, 0).map(|t| (user, ver, t))
                }))
            }

            async fn token_version(&self, id: i64) -> $crate::store::StoreResult<Option<i64>> {
                let row: Option<(i64,)> = sqlx::query_as("SELECT token_version FROM users WHERE id = $1")
                    .bind(id)
                    .fetch_optional(self.reader())
                    .await?;
                Ok(row.map(|r| r.0))
            }
                    async fn users_by_ids(&self, ids: &[i64]) -> $crate::store::StoreResult<Vec<$crate::store::UserRecord>> {
                if ids.is_empty() {
                    return Ok(Vec::new());
                }
                Ok(sqlx::query_as(concat!(
                    concat!("SELECT ", $crate::store::sql::user_columns!(), " FROM users WHERE id IN ("),
                    $ids,
                    ")"
                ))
                .bind($crate::store::json_ids(ids))
                .fetch_all(self.reader())
                .await?)
            }
        }

        #[async_trait::async_trait]
        impl $crate::store::FriendStore for $store {
            async fn create_request(&self, from: i64, to: i64, message: &str) -> $crate::store::StoreResult<$crate::store::FriendRequestRecord> {
                sqlx::query_as(
                    concat!("INSERT INTO friend_requests (from_user_id, to_user_id, message, status, created_at, updated_at)
                     VALUES ($1, $2, $3, 'pending', $4, $4)
                     RETURNING ", $crate::store::sql::request_columns!()),
                )
                .bind(from)
                .bind(to)
                .bind(message)
                .bind($crate::store::now())
                .fetch_one(self.writer())
                .await
                .map_err($crate::store::StoreError::classify)
            }

            async fn request_by_id(&self, id: i64) -> $crate::store::StoreResult<Option<$crate::store::FriendRequestRecord>> {
                Ok(sqlx::query_as(
                    concat!("SELECT ", $crate::store::sql::request_columns!(), " FROM friend_requests WHERE id = $1"),
                )
                .bind(id)
                .fetch_optional(self.reader())
                .await?)
            }

            async fn pending_request(&self, from: i64, to: i64) -> $crate::store::StoreResult<Option<$crate::store::FriendRequestRecord>> {
                Ok(sqlx::query_as(
                    concat!("SELECT ", $crate::store::sql::request_columns!(), " FROM friend_requests
                     WHERE from_user_id = $1 AND to_user_id = $2 AND status = 'pending'"),
                )
                .bind(from)
                .bind(to)
                .fetch_optional(self.reader())
                .await?)
            }

            async fn list_requests(&self, user: i64, incoming: bool, limit: i64) -> $crate::store::StoreResult<Vec<$crate::store::FriendRequestRecord>> {
                let sql = if incoming {
                    concat!("SELECT ", $crate::store::sql::request_columns!(), " FROM friend_requests
                     WHERE to_user_id = $1 ORDER BY id DESC LIMIT $2")
                } else {
                    concat!("SELECT ", $crate::store::sql::request_columns!(), " FROM friend_requests
                     WHERE from_user_id = $1 ORDER BY id DESC LIMIT $2")
                };
                Ok(sqlx::query_as(sql).bind(user).bind(limit).fetch_all(self.reader()).await?)
            }

            async fn accept_request(&self, id: i64) -> $crate::store::StoreResult<Option<$crate::store::FriendRequestRecord>> {
                let now = $crate::store::now();
                let mut tx = self.writer().begin().await?;
                let req: Option<$crate::store::FriendRequestRecord> = sqlx::query_as(
                    concat!("UPDATE friend_requests SET status = 'accepted', updated_at = $2 WHERE id = $1 AND status = 'pending'
                     RETURNING ", $crate::store::sql::request_columns!()),
                )
                .bind(id)
                .bind(now)
                .fetch_optional(&mut *tx)
                .await?;
                let Some(req) = req else { return Ok(None) };
                sqlx::query(
                    "INSERT INTO friendships (user_id, friend_id, created_at) VALUES ($1, $2, $3), ($2, $1, $3)
                     ON CONFLICT DO NOTHING",
                )
                .bind(req.from_user_id)
                .bind(req.to_user_id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "UPDATE friend_requests SET status = 'accepted', updated_at = $3
                     WHERE from_user_id = $1 AND to_user_id = $2 AND status = 'pending'",
                )
                .bind(req.to_user_id)
                .bind(req.from_user_id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(Some(req))
            }

            async fn reject_request(&self, id: i64) -> $crate::store::StoreResult<Option<$crate::store::FriendRequestRecord>> {
                Ok(sqlx::query_as(
                    concat!("UPDATE friend_requests SET status = 'rejected', updated_at = $2 WHERE id = $1 AND status = 'pending'
                     RETURNING ", $crate::store::sql::request_columns!()),
                )
                .bind(id)
                .bind($crate::store::now())
                .fetch_optional(self.writer())
                .await?)
            }

            async fn are_friends(&self, a: i64, b: i64) -> $crate::store::StoreResult<bool> {
                let row: Option<(i64,)> = sqlx::query_as("SELECT user_id FROM friendships WHERE user_id = $1 AND friend_id = $2")
                    .bind(a)
                    .bind(b)
                    .fetch_optional(self.reader())
                    .await?;
                Ok(row.is_some())
            }

            async fn friends(&self, user: i64) -> $crate::store::StoreResult<Vec<$crate::store::UserRecord>> {
                Ok(sqlx::query_as(
                    "SELECT u.id, u.username, u.nickname, u.sex, u.password_hash, u.token_version, u.created_at
                     FROM friendships f JOIN users u ON u.id = f.friend_id
                     WHERE f.user_id = $1 ORDER BY u.username_lower",
                )
                .bind(user)
                .fetch_all(self.reader())
                .await?)
            }

            async fn remove_friendship(&self, a: i64, b: i64) -> $crate::store::StoreResult<bool> {
                let done = sqlx::query(
                    "DELETE FROM friendships WHERE (user_id = $1 AND friend_id = $2) OR (user_id = $2 AND friend_id = $1)",
                )
                .bind(a)
                .bind(b)
                .execute(self.writer())
                .await?;
                Ok(done.rows_affected() > 0)
            }
        }

        impl $store {
            async fn message_by_client_id(&self, from: i64, client_msg_id: &str) -> $crate::store::StoreResult<Option<$crate::store::MessageRecord>> {
                Ok(sqlx::query_as(
                    concat!("SELECT ", $crate::store::sql::message_columns!(), "
                     FROM messages WHERE from_user_id = $1 AND client_msg_id = $2"),
                )
                .bind(from)
                .bind(client_msg_id)
                .fetch_optional(self.writer())
                .await?)
            }

            /// For a membership change: locks a group conversation's row until the transaction ends, bumps its
            /// `members_version`, and returns its last seq. Every group send locks the same row when it allocates
            /// a seq, so membership changes made under this lock are ordered against sends: a message goes exactly
            /// to the members at its seq. (A node that caches a group's members by version sees the bump.)
            async fn lock_for_membership_change(
                tx: &mut sqlx::Transaction<'_, $db>,
                conversation_id: &str,
            ) -> $crate::store::StoreResult<i64> {
                let (last_seq,): (i64,) =
                    sqlx::query_as("UPDATE conversations SET members_version = members_version + 1 WHERE id = $1 RETURNING last_seq")
                        .bind(conversation_id)
                        .fetch_one(&mut **tx)
                        .await?;
                Ok(last_seq)
            }

            /// Checks a direct message's friendship, allocates the next seq (the conversation row stays locked until
            /// commit, which serialises appends to one conversation) and inserts the message, inside the caller's
            /// transaction. With `check_repeat`, a repeated client_msg_id is found before anything is written
            /// (`Repeated`), which is exact on a backend with a single writer; without it, the unique index finds
            /// it and the caller's savepoint returns the allocated seq.
            async fn insert_one(
                tx: &mut sqlx::Transaction<'_, $db>,
                new: &$crate::store::NewMessage,
                now: chrono::DateTime<chrono::Utc>,
                check_repeat: bool,
            ) -> $crate::store::StoreResult<($crate::store::MessageRecord, Vec<i64>)> {
                let conversation_id = new.conversation_id.to_string();
                let (kind, group_id, low, high) = match new.conversation_id {
                    $crate::domain::ConversationId::Direct { low, high } => ("direct", None, Some(low), Some(high)),
                    $crate::domain::ConversationId::Group(g) => ("group", Some(g), None, None),
                };
                if let Some(to) = new.to_user_id {
                    let (friends, repeat): (i64, i64) = sqlx::query_as(
                        "SELECT (SELECT COUNT(*) FROM friendships WHERE user_id = $1 AND friend_id = $2),
                                (SELECT COUNT(*) FROM messages WHERE from_user_id = $1 AND client_msg_id = $3)",
                    )
                    .bind(new.from_user_id)
                    .bind(to)
                    .bind(if check_repeat { new.client_msg_id.as_deref() } else { None })
                    .fetch_one(&mut **tx)
                    .await?;
                    if friends == 0 {
                        return Err($crate::store::StoreError::NotFriends);
                    }
                    if repeat != 0 {
                        return Err($crate::store::StoreError::Repeated);
                    }
                }
                // A group message: lock the group's conversation row first (membership changes lock it too), so
                // the members read next are the members at the seq allocated after. An unknown group has no row,
                // and a dissolved one no members: both are refused before anything is allocated.
                let members: Option<Vec<i64>> = match group_id {
                    Some(g) => {
                        let locked: Option<(i64,)> =
                            sqlx::query_as("UPDATE conversations SET updated_at = updated_at WHERE id = $1 RETURNING last_seq")
                                .bind(&conversation_id)
                                .fetch_optional(&mut **tx)
                                .await?;
                        if locked.is_none() {
                            return Err($crate::store::StoreError::NotMember);
                        }
                        let members: Vec<(i64,)> = sqlx::query_as("SELECT user_id FROM group_members WHERE group_id = $1")
                            .bind(g)
                            .fetch_all(&mut **tx)
                            .await?;
                        let members: Vec<i64> = members.into_iter().map(|m| m.0).collect();
                        if !members.contains(&new.from_user_id) {
                            return Err($crate::store::StoreError::NotMember);
                        }
                        Some(members)
                    }
                    None => None,
                };
                let (seq,): (i64,) = sqlx::query_as(
                    "INSERT INTO conversations (id, kind, group_id, user_low, user_high, last_seq, created_at, updated_at)
                     VALUES ($1, $2, $3, $4, $5, 1, $6, $6)
                     ON CONFLICT (id) DO UPDATE SET last_seq = conversations.last_seq + 1, updated_at = $6
                     RETURNING last_seq",
                )
                .bind(&conversation_id)
                .bind(kind)
                .bind(group_id)
                .bind(low)
                .bind(high)
                .bind(now)
                .fetch_one(&mut **tx)
                .await?;
                // The file, if any, must still exist and be the sender's; referencing it protects it from cleanup
                // (which deletes only unreferenced files, so it either ran before and we fail, or waits for us).
                if let Some(file_id) = new.file_id {
                    let found: Option<(i64,)> = sqlx::query_as(
                        "UPDATE files SET referenced_at = COALESCE(referenced_at, $3) WHERE id = $1 AND uploader_id = $2
                         RETURNING id",
                    )
                    .bind(file_id)
                    .bind(new.from_user_id)
                    .bind(now)
                    .fetch_optional(&mut **tx)
                    .await?;
                    if found.is_none() {
                        return Err($crate::store::StoreError::FileGone);
                    }
                }
                let recipients: Vec<i64> = match members {
                    Some(members) => members,
                    None => vec![high.unwrap_or_default(), low.unwrap_or_default()],
                };
                let msg: $crate::store::MessageRecord = sqlx::query_as(
                    concat!("INSERT INTO messages (conversation_id, seq, from_user_id, to_user_id, group_id, kind, body, file_id, client_msg_id, created_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                     RETURNING ", $crate::store::sql::message_columns!()),
                )
                .bind(&conversation_id)
                .bind(seq)
                .bind(new.from_user_id)
                .bind(new.to_user_id)
                .bind(new.group_id)
                .bind(new.kind)
                .bind(&new.body)
                .bind(new.file_id)
                .bind(&new.client_msg_id)
                .bind(now)
                .fetch_one(&mut **tx)
                .await
                .map_err($crate::store::StoreError::classify)?;
                // Both sides of a direct conversation exist from its first message; and sending implies having
                // read the conversation up to one's own message. One statement for both.
                let peer = match (low, high) {
                    (Some(l), Some(h)) => Some(if l == new.from_user_id { h } else { l }),
                    _ => None,
                };
                sqlx::query(
                    "INSERT INTO user_conversations (user_id, conversation_id, read_seq, visible_from_seq)
                     SELECT $1, $2, $3, 0 UNION ALL SELECT $4, $2, 0, 0 WHERE $4 IS NOT NULL
                     ON CONFLICT (user_id, conversation_id) DO UPDATE
                     SET read_seq = CASE WHEN excluded.read_seq > user_conversations.read_seq
                                         THEN excluded.read_seq ELSE user_conversations.read_seq END",
                )
                .bind(new.from_user_id)
                .bind(&conversation_id)
                .bind(seq)
                .bind(peer)
                .execute(&mut **tx)
                .await?;
                Ok((msg, recipients))
            }

            /// Appends a batch in one transaction (group commit: one durable commit for many sends). Messages are
            /// taken in conversation-id order, so concurrent batches lock conversation rows in the same order and
            /// cannot deadlock; within a conversation the arrival order is kept. A message that can fail after its
            /// seq is allocated runs under a savepoint, whose rollback returns the seq, so every conversation stays
            /// gapless whatever fails.
            pub(crate) async fn insert_batch(
                &self,
                batch: &[$crate::store::NewMessage],
            ) -> Vec<$crate::store::StoreResult<($crate::store::MessageRecord, Vec<i64>)>> {
                if batch.is_empty() {
                    return Vec::new();
                }
                let now = $crate::store::now();
                let direct: Option<&'static str> = $direct;
                if let (Some(sql), [new]) = (direct, batch) {
                    if new.is_plain_direct() {
                        // A lone direct message (light load): one autocommitted statement, one round trip.
                        return vec![Self::insert_direct(self.writer(), sql, new, now).await];
                    }
                }
                if batch.iter().any(|m| m.is_plain_direct()) {
                    // Optimistic: direct messages without savepoints. With a `direct` statement, it allocates no
                    // seq unless it succeeds whole, and fails only in a rare race (two sends with one
                    // client_msg_id in different batches); without one (SQLite, one writer), repeats are found
                    // before writing. On any failure nothing is committed and the batch runs again carefully.
                    if let Some(results) = self.run_batch(batch, now, true).await {
                        return results;
                    }
                }
                self.run_batch(batch, now, false).await.unwrap_or_else(|| {
                    batch.iter().map(|_| Err($crate::store::StoreError::Db(sqlx::Error::Protocol("batch failed".into())))).collect()
                })
            }

            /// The single statement for a direct text message on backends that have one (`direct`): friendship
            /// check, seq allocation, insert and both parties' conversation rows at once. No row back means not
            /// friends, or a message with this client_msg_id already exists (the caller looks it up).
            async fn insert_direct<'c, E>(
                conn: E,
                sql: &'static str,
                new: &$crate::store::NewMessage,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<($crate::store::MessageRecord, Vec<i64>)>
            where
                E: sqlx::Executor<'c, Database = $db>,
            {
                let $crate::domain::ConversationId::Direct { low, high } = new.conversation_id else {
                    return Err($crate::store::StoreError::Db(sqlx::Error::Protocol("not a direct message".into())));
                };
                let to = new.to_user_id.unwrap_or_default();
                let row: Option<$crate::store::MessageRecord> = sqlx::query_as(sql)
                    .bind(new.conversation_id.to_string())
                    .bind(new.from_user_id)
                    .bind(to)
                    .bind(low)
                    .bind(high)
                    .bind(new.kind)
                    .bind(&new.body)
                    .bind(&new.client_msg_id)
                    .bind(now)
                    .fetch_optional(conn)
                    .await
                    .map_err($crate::store::StoreError::classify)?;
                row.map(|m| (m, vec![high, low])).ok_or($crate::store::StoreError::NotFriends)
            }

            /// Appends a batch in one transaction (group commit: one durable commit for many sends). Messages are
            /// taken in conversation-id order, so concurrent batches lock conversation rows in the same order and
            /// cannot deadlock; within a conversation the arrival order is kept. In careful mode, a message that
            /// can fail after its seq is allocated runs under a savepoint, whose rollback returns the seq, so every
            /// conversation stays gapless whatever fails. In optimistic mode, plain direct messages run without a
            /// savepoint (as the backend's `direct` statement, or with repeats checked first) and any failure of
            /// theirs other than a refusal abandons the whole transaction (`None`) for the caller to run it again
            /// carefully.
            async fn run_batch(
                &self,
                batch: &[$crate::store::NewMessage],
                now: chrono::DateTime<chrono::Utc>,
                optimistic: bool,
            ) -> Option<Vec<$crate::store::StoreResult<($crate::store::MessageRecord, Vec<i64>)>>> {
                let direct: Option<&'static str> = $direct;
                let mut order: Vec<usize> = (0..batch.len()).collect();
                order.sort_by_cached_key(|&i| batch[i].conversation_id.to_string());
                let mut results: Vec<Option<$crate::store::StoreResult<_>>> = (0..batch.len()).map(|_| None).collect();
                let mut tx = match self.writer().begin().await {
                    Ok(tx) => tx,
                    Err(e) => {
                        let msg = e.to_string();
                        return Some(batch.iter().map(|_| Err($crate::store::StoreError::Db(sqlx::Error::Protocol(msg.clone())))).collect());
                    }
                };
                for i in order {
                    let new = &batch[i];
                    if optimistic && new.is_plain_direct() {
                        let r = match direct {
                            Some(sql) => Self::insert_direct(&mut *tx, sql, new, now).await,
                            None => Self::insert_one(&mut tx, new, now, true).await,
                        };
                        match r {
                            // (A refusal wrote nothing and leaves the transaction usable.)
                            r @ (Ok(_)
                            | Err($crate::store::StoreError::NotFriends)
                            | Err($crate::store::StoreError::Repeated)) => results[i] = Some(r),
                            Err(_) => {
                                let _ = tx.rollback().await;
                                return None;
                            }
                        }
                        continue;
                    }
                    // In a batch every message runs under a savepoint: a statement the database refuses aborts
                    // the whole transaction otherwise, and the commit would quietly roll back the others too.
                    let guarded = batch.len() > 1
                        || new.client_msg_id.is_some()
                        || new.file_id.is_some()
                        || new.group_id.is_some();
                    if guarded {
                        if let Err(e) = sqlx::query("SAVEPOINT one").execute(&mut *tx).await {
                            results[i] = Some(Err(e.into()));
                            continue;
                        }
                    }
                    let r = Self::insert_one(&mut tx, new, now, false).await;
                    if guarded {
                        let end = if r.is_ok() { "RELEASE SAVEPOINT one" } else { "ROLLBACK TO SAVEPOINT one" };
                        let _ = sqlx::query(end).execute(&mut *tx).await;
                        if r.is_err() {
                            let _ = sqlx::query("RELEASE SAVEPOINT one").execute(&mut *tx).await;
                        }
                    }
                    results[i] = Some(r);
                }
                if let Err(e) = tx.commit().await {
                    let msg = e.to_string();
                    return Some(results
                        .into_iter()
                        .map(|r| match r {
                            Some(Err(e)) => Err(e),
                            _ => Err($crate::store::StoreError::Db(sqlx::Error::Protocol(format!("commit failed: {msg}")))),
                        })
                        .collect());
                }
                Some(results
                    .into_iter()
                    .map(|r| r.unwrap_or_else(|| Err($crate::store::StoreError::Db(sqlx::Error::Protocol("not run".into())))))
                    .collect())
            }
        }

        #[async_trait::async_trait]
        impl $crate::store::batch::AckWriter for $store {
            async fn write_acks(&self, acks: &[($crate::store::batch::AckKey, i64)]) -> $crate::store::StoreResult<()> {
                let mut sorted: Vec<&($crate::store::batch::AckKey, i64)> = acks.iter().collect();
                sorted.sort_by(|a, b| a.0.cmp(&b.0));
                // One multi-row upsert per chunk instead of a round trip per cursor: a busy group produces a
                // cursor move per member per message. Keys are unique within a batch (the batcher keeps the
                // highest seq per cursor), as one statement may not update a row twice.
                // One statement (the usual case) commits by itself; more need a transaction around them.
                let single = sorted.len() <= $crate::store::sql::ACK_ROWS_PER_STATEMENT;
                let mut tx = if single { None } else { Some(self.writer().begin().await?) };
                for chunk in sorted.chunks($crate::store::sql::ACK_ROWS_PER_STATEMENT) {
                    let mut q = sqlx::QueryBuilder::<$db>::new(
                        "INSERT INTO delivery_cursors (user_id, device_id, conversation_id, delivered_seq) ",
                    );
                    q.push_values(chunk, |mut row, (k, seq)| {
                        row.push_bind(k.user).push_bind(&k.device).push_bind(&k.conversation).push_bind(*seq);
                    });
                    q.push(
                        " ON CONFLICT (user_id, device_id, conversation_id)
                         DO UPDATE SET delivered_seq = excluded.delivered_seq
                         WHERE delivery_cursors.delivered_seq < excluded.delivered_seq",
                    );
                    match tx.as_mut() {
                        Some(tx) => q.build().execute(&mut **tx).await?,
                        None => q.build().execute(self.writer()).await?,
                    };
                }
                if let Some(tx) = tx {
                    tx.commit().await?;
                }
                Ok(())
            }
        }

        #[async_trait::async_trait]
        impl $crate::store::batch::BatchWriter for $store {
            async fn insert_batch(
                &self,
                batch: &[$crate::store::NewMessage],
            ) -> Vec<$crate::store::StoreResult<($crate::store::MessageRecord, Vec<i64>)>> {
                <$store>::insert_batch(self, batch).await
            }
        }

        #[async_trait::async_trait]
        impl $crate::store::MessageStore for $store {
            async fn append(&self, new: $crate::store::NewMessage) -> $crate::store::StoreResult<$crate::store::Appended> {
                let repeat = |message| $crate::store::Appended { message, created: false, recipients: Vec::new() };
                let inserted = match self.batcher() {
                    Some(b) => b.insert(new.clone()).await,
                    None => self.insert_batch(std::slice::from_ref(&new)).await.pop().unwrap_or_else(|| {
                        Err($crate::store::StoreError::Db(sqlx::Error::Protocol("empty batch".into())))
                    }),
                };
                match inserted {
                    Ok((message, recipients)) => Ok($crate::store::Appended { message, created: true, recipients }),
                    // A repeated client_msg_id (first sent earlier, or by a concurrent send that committed
                    // first) returns the first message, whatever else changed since; the failed attempt rolled
                    // back whole, seq included, so the conversation stays gapless.
                    Err(e) => match &new.client_msg_id {
                        Some(cid) => match self.message_by_client_id(new.from_user_id, cid).await? {
                            Some(m) => Ok(repeat(m)),
                            None => Err(e),
                        },
                        None => Err(e),
                    },
                }
            }

            async fn messages_between(
                &self,
                conversation_id: &str,
                after: i64,
                before: i64,
                limit: i64,
                newest: bool,
            ) -> $crate::store::StoreResult<Vec<$crate::store::MessageRecord>> {
                let sql = if newest {
                    concat!("SELECT ", $crate::store::sql::message_columns!(), "
                     FROM messages WHERE conversation_id = $1 AND seq > $2 AND seq < $3 ORDER BY seq DESC LIMIT $4")
                } else {
                    concat!("SELECT ", $crate::store::sql::message_columns!(), "
                     FROM messages WHERE conversation_id = $1 AND seq > $2 AND seq < $3 ORDER BY seq ASC LIMIT $4")
                };
                let mut rows: Vec<$crate::store::MessageRecord> = sqlx::query_as(sql)
                    .bind(conversation_id)
                    .bind(after)
                    .bind(before)
                    .bind(limit)
                    .fetch_all(self.reader())
                    .await?;
                if newest {
                    rows.reverse();
                }
                Ok(rows)
            }

            async fn user_conversations(&self, user: i64) -> $crate::store::StoreResult<Vec<$crate::store::UserConversationRecord>> {
                Ok(sqlx::query_as(
                    "SELECT uc.conversation_id, c.kind, c.group_id, c.user_low, c.user_high, c.last_seq, uc.read_seq,
                            uc.visible_from_seq, c.updated_at
                     FROM user_conversations uc JOIN conversations c ON c.id = uc.conversation_id
                     WHERE uc.user_id = $1 ORDER BY c.updated_at DESC, c.id",
                )
                .bind(user)
                .fetch_all(self.reader())
                .await?)
            }

            async fn user_conversation(&self, user: i64, conversation_id: &str) -> $crate::store::StoreResult<Option<$crate::store::UserConversationRecord>> {
                Ok(sqlx::query_as(
                    "SELECT uc.conversation_id, c.kind, c.group_id, c.user_low, c.user_high, c.last_seq, uc.read_seq,
                            uc.visible_from_seq, c.updated_at
                     FROM user_conversations uc JOIN conversations c ON c.id = uc.conversation_id
                     WHERE uc.user_id = $1 AND uc.conversation_id = $2",
                )
                .bind(user)
                .bind(conversation_id)
                .fetch_optional(self.reader())
                .await?)
            }

            async fn last_messages(&self, conversation_ids: &[String]) -> $crate::store::StoreResult<Vec<$crate::store::MessageRecord>> {
                if conversation_ids.is_empty() {
                    return Ok(Vec::new());
                }
                Ok(sqlx::query_as(concat!(
                    "SELECT m.id, m.conversation_id, m.seq, m.from_user_id, m.to_user_id, m.group_id, m.kind, m.body, m.file_id,
                            m.client_msg_id, m.created_at
                     FROM conversations c JOIN messages m ON m.conversation_id = c.id AND m.seq = c.last_seq
                     WHERE c.id IN (", $texts, ")"
                ))
                .bind($crate::store::json_strings(conversation_ids))
                .fetch_all(self.reader())
                .await?)
            }

            async fn mark_read(&self, user: i64, conversation_id: &str, seq: i64) -> $crate::store::StoreResult<bool> {
                let done = sqlx::query(
                    "UPDATE user_conversations SET read_seq = $3 WHERE user_id = $1 AND conversation_id = $2 AND read_seq < $3",
                )
                .bind(user)
                .bind(conversation_id)
                .bind(seq)
                .execute(self.writer())
                .await?;
                Ok(done.rows_affected() > 0)
            }

            async fn ack(&self, user: i64, device: &str, conversation_id: &str, seq: i64) -> $crate::store::StoreResult<()> {
                let key = $crate::store::batch::AckKey { user, device: device.to_string(), conversation: conversation_id.to_string() };
                match self.ack_batcher() {
                    Some(b) => b.ack(key, seq).await,
                    None => $crate::store::batch::AckWriter::write_acks(self, &[(key, seq)]).await,
                }
            }

            async fn device_cursors(&self, user: i64, device: &str) -> $crate::store::StoreResult<Vec<(String, i64)>> {
                Ok(sqlx::query_as(
                    "SELECT conversation_id, delivered_seq FROM delivery_cursors WHERE user_id = $1 AND device_id = $2",
                )
                .bind(user)
                .bind(device)
                .fetch_all(self.reader())
                .await?)
            }
        }
        #[async_trait::async_trait]
        impl $crate::store::GroupStore for $store {
            async fn create_group(&self, name: &str, owner: i64, members: &[i64]) -> $crate::store::StoreResult<$crate::store::GroupRecord> {
                let now = $crate::store::now();
                let mut tx = self.writer().begin().await?;
                let group: $crate::store::GroupRecord = sqlx::query_as(
                    "INSERT INTO chat_groups (name, owner_id, create_user_id, created_at) VALUES ($1, $2, $2, $3)
                     RETURNING id, name, owner_id, create_user_id, created_at, dissolved_at",
                )
                .bind(name)
                .bind(owner)
                .bind(now)
                .fetch_one(&mut *tx)
                .await?;
                let conversation = format!("g:{}", group.id);
                sqlx::query(
                    "INSERT INTO conversations (id, kind, group_id, last_seq, created_at, updated_at)
                     VALUES ($1, 'group', $2, 0, $3, $3)",
                )
                .bind(&conversation)
                .bind(group.id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                let mut all = vec![owner];
                all.extend(members.iter().copied().filter(|m| *m != owner));
                sqlx::query(concat!(
                    "INSERT INTO group_members (group_id, user_id, role, joined_seq, joined_at)
                     SELECT $2, ids.value, CASE WHEN ids.value = $3 THEN 'owner' ELSE 'member' END, 0, $4 FROM (",
                    $ids,
                    ") AS ids WHERE true ON CONFLICT DO NOTHING"
                ))
                .bind($crate::store::json_ids(&all))
                .bind(group.id)
                .bind(owner)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                sqlx::query(concat!(
                    "INSERT INTO user_conversations (user_id, conversation_id, read_seq, visible_from_seq)
                     SELECT ids.value, $2, 0, 0 FROM (",
                    $ids,
                    ") AS ids WHERE true ON CONFLICT DO NOTHING"
                ))
                .bind($crate::store::json_ids(&all))
                .bind(&conversation)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(group)
            }

            async fn group(&self, id: i64) -> $crate::store::StoreResult<Option<$crate::store::GroupRecord>> {
                Ok(sqlx::query_as(
                    "SELECT id, name, owner_id, create_user_id, created_at, dissolved_at FROM chat_groups WHERE id = $1",
                )
                .bind(id)
                .fetch_optional(self.reader())
                .await?)
            }

            async fn groups_of(&self, user: i64) -> $crate::store::StoreResult<Vec<$crate::store::GroupRecord>> {
                Ok(sqlx::query_as(
                    "SELECT g.id, g.name, g.owner_id, g.create_user_id, g.created_at, g.dissolved_at
                     FROM group_members m JOIN chat_groups g ON g.id = m.group_id
                     WHERE m.user_id = $1 AND g.dissolved_at IS NULL ORDER BY g.id DESC",
                )
                .bind(user)
                .fetch_all(self.reader())
                .await?)
            }

            async fn members(&self, group: i64) -> $crate::store::StoreResult<Vec<$crate::store::MemberRecord>> {
                Ok(sqlx::query_as(
                    "SELECT m.user_id, u.username, u.nickname, m.role, m.joined_seq
                     FROM group_members m JOIN users u ON u.id = m.user_id
                     WHERE m.group_id = $1
                     ORDER BY CASE m.role WHEN 'owner' THEN 0 WHEN 'admin' THEN 1 ELSE 2 END, m.joined_at, m.user_id",
                )
                .bind(group)
                .fetch_all(self.reader())
                .await?)
            }

            async fn member(&self, group: i64, user: i64) -> $crate::store::StoreResult<Option<$crate::store::MemberRecord>> {
                Ok(sqlx::query_as(
                    "SELECT m.user_id, u.username, u.nickname, m.role, m.joined_seq
                     FROM group_members m JOIN users u ON u.id = m.user_id
                     WHERE m.group_id = $1 AND m.user_id = $2",
                )
                .bind(group)
                .bind(user)
                .fetch_optional(self.reader())
                .await?)
            }

            async fn was_member(&self, group: i64, user: i64) -> $crate::store::StoreResult<bool> {
                let row: Option<(i64,)> = sqlx::query_as(
                    "SELECT user_id FROM group_member_periods WHERE group_id = $1 AND user_id = $2 LIMIT 1",
                )
                .bind(group)
                .bind(user)
                .fetch_optional(self.reader())
                .await?;
                Ok(row.is_some())
            }

            async fn rename(&self, group: i64, name: &str) -> $crate::store::StoreResult<()> {
                sqlx::query("UPDATE chat_groups SET name = $2 WHERE id = $1").bind(group).bind(name).execute(self.writer()).await?;
                Ok(())
            }

            async fn add_members(&self, group: i64, users: &[i64], max_members: i64) -> $crate::store::StoreResult<Vec<i64>> {
                let now = $crate::store::now();
                let conversation = format!("g:{group}");
                let mut tx = self.writer().begin().await?;
                let last_seq = Self::lock_for_membership_change(&mut tx, &conversation).await?;
                let added: Vec<(i64,)> = sqlx::query_as(concat!(
                    "INSERT INTO group_members (group_id, user_id, role, joined_seq, joined_at)
                     SELECT $2, ids.value, 'member', $3, $4 FROM (",
                    $ids,
                    ") AS ids WHERE true ON CONFLICT DO NOTHING RETURNING user_id"
                ))
                .bind($crate::store::json_ids(users))
                .bind(group)
                .bind(last_seq)
                .bind(now)
                .fetch_all(&mut *tx)
                .await?;
                let added: Vec<i64> = added.into_iter().map(|a| a.0).collect();
                let (count,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM group_members WHERE group_id = $1")
                    .bind(group)
                    .fetch_one(&mut *tx)
                    .await?;
                if count > max_members {
                    return Err($crate::store::StoreError::GroupFull);
                }
                // A returning member sees messages from its re-join on.
                sqlx::query(concat!(
                    "INSERT INTO user_conversations (user_id, conversation_id, read_seq, visible_from_seq)
                     SELECT ids.value, $2, $3, $3 FROM (",
                    $ids,
                    ") AS ids WHERE true ON CONFLICT (user_id, conversation_id)
                     DO UPDATE SET read_seq = excluded.read_seq, visible_from_seq = excluded.visible_from_seq"
                ))
                .bind($crate::store::json_ids(&added))
                .bind(&conversation)
                .bind(last_seq)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(added)
            }

            async fn remove_member(&self, group: i64, user: i64) -> $crate::store::StoreResult<bool> {
                let conversation = format!("g:{group}");
                let mut tx = self.writer().begin().await?;
                let last_seq = Self::lock_for_membership_change(&mut tx, &conversation).await?;
                let gone: Option<(i64,)> =
                    sqlx::query_as("DELETE FROM group_members WHERE group_id = $1 AND user_id = $2 RETURNING joined_seq")
                        .bind(group)
                        .bind(user)
                        .fetch_optional(&mut *tx)
                        .await?;
                let Some((joined_seq,)) = gone else { return Ok(false) };
                sqlx::query(
                    "INSERT INTO group_member_periods (group_id, user_id, from_seq, to_seq) VALUES ($1, $2, $3, $4)
                     ON CONFLICT DO NOTHING",
                )
                .bind(group)
                .bind(user)
                .bind(joined_seq)
                .bind(last_seq)
                .execute(&mut *tx)
                .await?;
                sqlx::query("DELETE FROM user_conversations WHERE user_id = $1 AND conversation_id = $2")
                    .bind(user)
                    .bind(&conversation)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(true)
            }

            async fn set_role(&self, group: i64, user: i64, role: &str) -> $crate::store::StoreResult<bool> {
                let done = sqlx::query("UPDATE group_members SET role = $3 WHERE group_id = $1 AND user_id = $2 AND role <> 'owner'")
                    .bind(group)
                    .bind(user)
                    .bind(role)
                    .execute(self.writer())
                    .await?;
                Ok(done.rows_affected() > 0)
            }

            async fn transfer(&self, group: i64, from: i64, to: i64) -> $crate::store::StoreResult<()> {
                let mut tx = self.writer().begin().await?;
                sqlx::query("UPDATE group_members SET role = 'admin' WHERE group_id = $1 AND user_id = $2")
                    .bind(group)
                    .bind(from)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("UPDATE group_members SET role = 'owner' WHERE group_id = $1 AND user_id = $2")
                    .bind(group)
                    .bind(to)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("UPDATE chat_groups SET owner_id = $2 WHERE id = $1").bind(group).bind(to).execute(&mut *tx).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn dissolve(&self, group: i64) -> $crate::store::StoreResult<Vec<i64>> {
                let conversation = format!("g:{group}");
                let mut tx = self.writer().begin().await?;
                Self::lock_for_membership_change(&mut tx, &conversation).await?;
                sqlx::query("UPDATE chat_groups SET dissolved_at = $2 WHERE id = $1 AND dissolved_at IS NULL")
                    .bind(group)
                    .bind($crate::store::now())
                    .execute(&mut *tx)
                    .await?;
                let members: Vec<(i64,)> = sqlx::query_as("DELETE FROM group_members WHERE group_id = $1 RETURNING user_id")
                    .bind(group)
                    .fetch_all(&mut *tx)
                    .await?;
                sqlx::query("DELETE FROM user_conversations WHERE conversation_id = $1")
                    .bind(&conversation)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(members.into_iter().map(|m| m.0).collect())
            }
        }
        #[async_trait::async_trait]
        impl $crate::store::FileStore for $store {
            async fn create_file(&self, f: $crate::store::NewFile) -> $crate::store::StoreResult<$crate::store::FileRecord> {
                Ok(sqlx::query_as(
                    concat!("INSERT INTO files (uploader_id, storage_key, kind, content_type, size, width, height, sha256, created_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                     RETURNING ", $crate::store::sql::file_columns!()),
                )
                .bind(f.uploader_id)
                .bind(&f.storage_key)
                .bind(f.kind)
                .bind(f.content_type)
                .bind(f.size)
                .bind(f.width)
                .bind(f.height)
                .bind(&f.sha256)
                .bind($crate::store::now())
                .fetch_one(self.writer())
                .await?)
            }

            async fn file(&self, id: i64) -> $crate::store::StoreResult<Option<$crate::store::FileRecord>> {
                Ok(sqlx::query_as(
                    concat!("SELECT ", $crate::store::sql::file_columns!(), "
                     FROM files WHERE id = $1"),
                )
                .bind(id)
                .fetch_optional(self.reader())
                .await?)
            }

            async fn files_by_ids(&self, ids: &[i64]) -> $crate::store::StoreResult<Vec<$crate::store::FileRecord>> {
                if ids.is_empty() {
                    return Ok(Vec::new());
                }
                Ok(sqlx::query_as(concat!(
                    concat!("SELECT ", $crate::store::sql::file_columns!(), "
                     FROM files WHERE id IN ("), $ids, ")"
                ))
                .bind($crate::store::json_ids(ids))
                .fetch_all(self.reader())
                .await?)
            }

            async fn shared_with(&self, file_id: i64, user: i64) -> $crate::store::StoreResult<bool> {
                let row: Option<(i64,)> = sqlx::query_as(
                    "SELECT m.id FROM messages m WHERE m.file_id = $1 AND (
                        (m.group_id IS NULL AND (m.from_user_id = $2 OR m.to_user_id = $2))
                        OR EXISTS (SELECT 1 FROM group_members gm
                                   WHERE gm.group_id = m.group_id AND gm.user_id = $2 AND gm.joined_seq < m.seq)
                        OR EXISTS (SELECT 1 FROM group_member_periods p
                                   WHERE p.group_id = m.group_id AND p.user_id = $2 AND p.from_seq < m.seq AND m.seq <= p.to_seq)
                     ) LIMIT 1",
                )
                .bind(file_id)
                .bind(user)
                .fetch_optional(self.reader())
                .await?;
                Ok(row.is_some())
            }

            async fn take_unreferenced(&self, before: chrono::DateTime<chrono::Utc>, limit: i64) -> $crate::store::StoreResult<Vec<$crate::store::FileRecord>> {
                Ok(sqlx::query_as(
                    concat!("DELETE FROM files WHERE id IN (
                        SELECT id FROM files WHERE referenced_at IS NULL AND created_at < $1 ORDER BY id LIMIT $2
                     ) AND referenced_at IS NULL
                     RETURNING ", $crate::store::sql::file_columns!()),
                )
                .bind(before)
                .bind(limit)
                .fetch_all(self.writer())
                .await?)
            }
        }
    };
}

pub(crate) use impl_sql_stores;
