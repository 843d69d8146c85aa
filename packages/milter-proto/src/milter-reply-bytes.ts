/**
 * milter-reply-bytes - the replies without payload that a filter answers
 * nearly every command with, each as one shared value and encoded once.
 *
 * The transport answers ten commands of a typical message, almost always with
 * CONTINUE; encoding allocated a reply object and a Buffer for each. The
 * shared buffers are safe to hand to stream.write because nothing writes
 * into them; they are internal (not exported by the package) so no caller can.
 */

import { encodeMilterReply, type MilterReply } from './milter-codec.js';

/** The replies without payload a milter response can turn into. */
export type BareResponseReplyType = 'CONTINUE' | 'ACCEPT' | 'REJECT' | 'TEMPFAIL' | 'DISCARD' | 'SKIP';

type BareReply<T extends BareResponseReplyType> = MilterReply & { readonly type: T };

export const BARE_REPLIES: { readonly [T in BareResponseReplyType]: BareReply<T> } = {
  CONTINUE: { type: 'CONTINUE' },
  ACCEPT: { type: 'ACCEPT' },
  REJECT: { type: 'REJECT' },
  TEMPFAIL: { type: 'TEMPFAIL' },
  DISCARD: { type: 'DISCARD' },
  SKIP: { type: 'SKIP' },
};

export const BARE_REPLY_BYTES: { readonly [T in BareResponseReplyType]: Buffer } = {
  CONTINUE: encodeMilterReply(BARE_REPLIES.CONTINUE),
  ACCEPT: encodeMilterReply(BARE_REPLIES.ACCEPT),
  REJECT: encodeMilterReply(BARE_REPLIES.REJECT),
  TEMPFAIL: encodeMilterReply(BARE_REPLIES.TEMPFAIL),
  DISCARD: encodeMilterReply(BARE_REPLIES.DISCARD),
  SKIP: encodeMilterReply(BARE_REPLIES.SKIP),
};

/** encodeMilterReply(reply), from the prebuilt bytes when there are some. */
export function milterReplyBytes(reply: MilterReply): Buffer {
  return Object.hasOwn(BARE_REPLY_BYTES, reply.type) ? BARE_REPLY_BYTES[reply.type as BareResponseReplyType] : encodeMilterReply(reply);
}
