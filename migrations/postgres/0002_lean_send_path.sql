-- The send path writes a message row and moves its conversation's last_seq on every send; keep both cheap.
--
-- messages: the foreign keys to users, conversations and groups are checked by the one statement that inserts
-- a message (it allocates the seq on the conversation row and checks friendship or membership first), and
-- users, conversations and groups are never deleted (a group is dissolved, not removed). Each of those checks
-- cost a trigger and a KEY SHARE lock on the referenced row per message: the recipient's user row was locked by
-- every concurrent sender to them. The key to files stays (media messages are rare, and it keeps file cleanup
-- from removing a referenced file).
ALTER TABLE messages DROP CONSTRAINT messages_conversation_id_fkey;
ALTER TABLE messages DROP CONSTRAINT messages_from_user_id_fkey;
ALTER TABLE messages DROP CONSTRAINT messages_to_user_id_fkey;
ALTER TABLE messages DROP CONSTRAINT messages_group_id_fkey;

-- conversations: nothing reads conversations by updated_at alone (a user's list joins through
-- user_conversations), and the index made every seq allocation a non-HOT update with two index inserts.
-- Free space per page lets those updates stay on their page.
DROP INDEX conversations_updated;
ALTER TABLE conversations SET (fillfactor = 70);
