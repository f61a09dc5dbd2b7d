-- At most one pending friend request per pair of users, whichever way it points (DESIGN.md §3: a request to
-- someone who already asked you accepts theirs). Before this index two requests sent at the same instant, X→Y
-- and Y→X, could both be stored pending; such pairs meant the same thing twice, so they become friends here.
INSERT OR IGNORE INTO friendships (user_id, friend_id, created_at)
SELECT a.from_user_id, a.to_user_id, strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
FROM friend_requests a
JOIN friend_requests b ON b.from_user_id = a.to_user_id AND b.to_user_id = a.from_user_id
WHERE a.status = 'pending' AND b.status = 'pending';

UPDATE friend_requests SET status = 'accepted', updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
WHERE status = 'pending'
  AND EXISTS (SELECT 1 FROM friend_requests b
              WHERE b.from_user_id = friend_requests.to_user_id AND b.to_user_id = friend_requests.from_user_id
                AND b.status = 'pending');

CREATE UNIQUE INDEX friend_requests_one_pending_per_pair
    ON friend_requests (min(from_user_id, to_user_id), max(from_user_id, to_user_id))
    WHERE status = 'pending';
