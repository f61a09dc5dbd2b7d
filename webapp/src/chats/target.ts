import type { Conversation } from "../api/client";

/** What a chat needs to show and send: its conversation id, title and recipient (a user or a group). */
export interface ChatTarget {
  conversationId: string;
  title: string;
  toUserId?: number;
  groupId?: number;
}

/** A direct conversation's id (DESIGN.md §7): `d:<smaller user id>:<larger>`. */
export function directConversationId(a: number, b: number): string {
  return `d:${Math.min(a, b)}:${Math.max(a, b)}`;
}

export function targetOf(c: Conversation): ChatTarget {
  if (c.group) return { conversationId: c.conversation_id, title: c.group.name, groupId: c.group.id };
  const peer = c.peer;
  return { conversationId: c.conversation_id, title: peer ? peer.nickname || peer.username : c.conversation_id, toUserId: peer?.id };
}
