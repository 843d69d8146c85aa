// dunno-server.mjs - the Node.js floor of the policy benchmarks: the same job
// as dunno-server.c (answer every Postfix policy request `action=DUNNO`, do
// nothing else) on Node's own net module, as any Node.js daemon must. Between
// the C server and Levee it splits Levee's cost into what Node's sockets take
// for every request and what Levee's own work adds (docs/benchmarks.md).
//
//   node bench/reference/dunno-server.mjs PORT
//
// Listens on 127.0.0.1:PORT only. A request ends at an empty line (LF LF),
// however the reads split it; the replies to every request a read completes
// go out in one write, as the C server does. SIGTERM or SIGINT ends it.
import net from 'node:net';

const LF = 0x0a;
const REPLY = Buffer.from('action=DUNNO\n\n', 'latin1');

/** How many requests `chunk` completes, given whether the byte before it was an LF; returns [count, endsWithLf]. */
function countRequestEnds(chunk, afterLf) {
  let count = 0;
  let previousLf = afterLf;
  for (let i = 0; i < chunk.length; i++) {
    const lf = chunk[i] === LF;
    // An LF right after an LF is the empty line. A request never starts with an empty line.
    if (lf && previousLf) {
      count++;
      previousLf = false;
    } else {
      previousLf = lf;
    }
  }
  return [count, previousLf];
}

function replies(count) {
  if (count === 1) return REPLY;
  return Buffer.concat(Array.from({ length: count }, () => REPLY));
}

const port = Number(process.argv[2]);
if (!Number.isInteger(port) || port < 1 || port > 65535) {
  process.stderr.write('usage: node dunno-server.mjs PORT\n');
  process.exit(2);
}
net
  .createServer((socket) => {
    let afterLf = false;
    socket.on('data', (chunk) => {
      const [count, endsWithLf] = countRequestEnds(chunk, afterLf);
      afterLf = endsWithLf;
      if (count > 0) socket.write(replies(count));
    });
    socket.on('error', () => socket.destroy());
  })
  .listen(port, '127.0.0.1');
for (const signal of ['SIGTERM', 'SIGINT']) process.once(signal, () => process.exit(0));
