import { BARE_REPLIES, BARE_REPLY_BYTES, milterReplyBytes, type BareResponseReplyType } from '../src/milter-reply-bytes.js';
import { encodeMilterReply, type MilterReply } from '../src/index.js';

const BARE_TYPES = Object.keys(BARE_REPLY_BYTES) as BareResponseReplyType[];

describe('milter-reply-bytes', () => {
  it.each(BARE_TYPES)('the prebuilt %s bytes are what the encoder writes', (type) => {
    expect(BARE_REPLIES[type]).toEqual({ type });
    expect(BARE_REPLY_BYTES[type].equals(encodeMilterReply({ type }))).toBe(true);
  });

  it('covers every reply a milter response turns into without payload', () => {
    expect(BARE_TYPES.sort()).toEqual(['ACCEPT', 'CONTINUE', 'DISCARD', 'REJECT', 'SKIP', 'TEMPFAIL']);
  });

  it('milterReplyBytes equals encodeMilterReply for bare and other replies', () => {
    const replies: MilterReply[] = [
      ...BARE_TYPES.map((type) => ({ type })),
      { type: 'PROGRESS' },
      { type: 'REPLYCODE', text: '550 5.7.1 no' },
      { type: 'ADDHEADER', name: 'X-Levee', value: 'yes' },
      { type: 'QUARANTINE', reason: 'held' },
    ];
    for (const reply of replies) expect(milterReplyBytes(reply).equals(encodeMilterReply(reply))).toBe(true);
  });

  it('hands out the same buffer each time for a bare reply, and a fresh one otherwise', () => {
    expect(milterReplyBytes({ type: 'CONTINUE' })).toBe(BARE_REPLY_BYTES.CONTINUE);
    const reply: MilterReply = { type: 'REPLYCODE', text: '451 4.3.0 later' };
    expect(milterReplyBytes(reply)).not.toBe(milterReplyBytes(reply));
  });
});
