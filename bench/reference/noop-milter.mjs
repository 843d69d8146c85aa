// noop-milter.mjs - the Node.js floor of the milter benchmarks: the same job
// as noop-milter.c (answer "continue" to every command the MTA waits for,
// negotiate the protocol flags Levee asks for, do nothing else) on Node's own
// net module. Between the C milter and Levee it splits Levee's cost per
// message into what Node's sockets take and what Levee's own work adds
// (docs/benchmarks.md).
//
//   node bench/reference/noop-milter.mjs PORT
//
// Listens on 127.0.0.1:PORT only. Packets may arrive split or several to a
// read; the replies to every packet a read completes go out in one write, as
// the C milter does. A malformed length or QUIT closes the connection.
// SIGTERM or SIGINT ends it.
import net from 'node:net';

// SMFIP_* bits Levee requests (packages/policy-daemon/src/milter-service.ts LEVEE_MILTER_WANTED).
const SMFIP_NR_HDR = 0x80;
const SMFIP_NOUNKNOWN = 0x100;
const SMFIP_SKIP = 0x400;
const SMFIP_NR_EOH = 0x40000;
const SMFIP_NR_BODY = 0x80000;
const WANTED_PROTOCOL = SMFIP_NR_HDR | SMFIP_NOUNKNOWN | SMFIP_SKIP | SMFIP_NR_EOH | SMFIP_NR_BODY;
const MAX_PACKET = 128 * 1024;
const CONTINUE = Buffer.from([0, 0, 0, 1, 0x63]);
const EMPTY = Buffer.alloc(0);

function serve(socket) {
  let pending = EMPTY;
  let protocol = 0;
  /** The reply to one packet, null when the MTA waits for none, 'quit' to close. */
  const answer = (cmd, data) => {
    switch (cmd) {
      case 0x4f: {
        // 'O' OPTNEG: version 6, no actions, the flags we want of those offered.
        protocol = data.length >= 12 ? WANTED_PROTOCOL & data.readUInt32BE(8) : 0;
        const out = Buffer.alloc(17);
        out.writeUInt32BE(13, 0);
        out[4] = 0x4f;
        out.writeUInt32BE(6, 5);
        out.writeUInt32BE(0, 9);
        out.writeUInt32BE(protocol >>> 0, 13);
        return out;
      }
      case 0x44: // 'D' MACRO
      case 0x41: // 'A' ABORT
      case 0x4b: // 'K' QUIT_NC
        return null;
      case 0x51: // 'Q' QUIT
        return 'quit';
      case 0x4c: // 'L' HEADER
        return protocol & SMFIP_NR_HDR ? null : CONTINUE;
      case 0x4e: // 'N' EOH
        return protocol & SMFIP_NR_EOH ? null : CONTINUE;
      case 0x42: // 'B' BODY
        return protocol & SMFIP_NR_BODY ? null : CONTINUE;
      default: // CONNECT, HELO, MAIL, RCPT, DATA, BODYEOB, UNKNOWN
        return CONTINUE;
    }
  };
  socket.on('data', (chunk) => {
    const buf = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
    const out = [];
    let at = 0;
    while (buf.length - at >= 5) {
      const len = buf.readUInt32BE(at);
      if (len === 0 || len > MAX_PACKET) return socket.destroy();
      if (buf.length - at < 4 + len) break;
      const reply = answer(buf[at + 4], buf.subarray(at + 5, at + 4 + len));
      at += 4 + len;
      if (reply === 'quit') return socket.destroy();
      if (reply !== null) out.push(reply);
    }
    pending = at === buf.length ? EMPTY : Buffer.from(buf.subarray(at));
    if (out.length > 0) socket.write(out.length === 1 ? out[0] : Buffer.concat(out));
  });
  socket.on('error', () => socket.destroy());
}

const port = Number(process.argv[2]);
if (!Number.isInteger(port) || port < 1 || port > 65535) {
  process.stderr.write('usage: node noop-milter.mjs PORT\n');
  process.exit(2);
}
net.createServer(serve).listen(port, '127.0.0.1');
for (const signal of ['SIGTERM', 'SIGINT']) process.once(signal, () => process.exit(0));
