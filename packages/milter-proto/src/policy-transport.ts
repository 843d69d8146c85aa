/**
 * policy-transport - serve the policy protocol on one byte stream.
 *
 * A thin adapter from a Duplex (a socket the daemon accepted) to the codec:
 * requests are answered strictly in order, one reply each, nothing unsolicited
 * (an extra byte makes Postfix discard the connection, pitfall C.24). A peer
 * that pipelines requests without reading replies is throttled: reading pauses
 * while too many requests wait or while our writes are not drained.
 *
 * On malformed input the connection is closed without a reply, as
 * SMTPD_POLICY_README asks: Postfix retries, then applies its default action.
 */

import type { Duplex } from 'node:stream';
import type { PolicyRequest } from './policy-attributes.js';
import { createPolicyDecoder, DEFAULT_POLICY_LIMITS, type PolicyErrorCode, type PolicyLimits } from './policy-codec.js';

export interface PolicyConnectionHandler {
  /** Answer one request with the encoded reply (see encodePolicyReply). Should not throw. */
  onRequest(request: PolicyRequest): Uint8Array | Promise<Uint8Array>;
  /** The peer sent something malformed; the connection is closed right after. */
  onProtocolError(code: PolicyErrorCode, detail: string): void;
  /** onRequest threw or rejected; the connection is closed without a reply. */
  onHandlerError(error: unknown): void;
  /** A reply was written (lets a draining server end the connection once it is idle). */
  onReplied?(): void;
}

export interface PolicyTransportOptions {
  readonly limits?: PolicyLimits;
  /** Requests decoded but not yet answered before reading pauses. */
  readonly maxQueuedRequests?: number;
}

export interface PolicyConnection {
  /** Requests received and not yet answered. */
  readonly inFlight: number;
}

/** servePolicyConnection - read requests from `stream`, write one reply per request. */
export function servePolicyConnection(
  stream: Duplex,
  handler: PolicyConnectionHandler,
  options: PolicyTransportOptions = {},
): PolicyConnection {
  const decoder = createPolicyDecoder(options.limits ?? DEFAULT_POLICY_LIMITS);
  const maxQueued = options.maxQueuedRequests ?? 16;
  const queue: PolicyRequest[] = [];
  let waiting = false; // an async answer is outstanding
  let closed = false;
  let writeBlocked = false;

  const close = (): void => {
    closed = true;
    queue.length = 0;
    stream.destroy();
  };

  const send = (reply: Uint8Array): void => {
    if (closed) return;
    const flushed = stream.write(reply);
    handler.onReplied?.();
    if (!flushed && !closed) {
      writeBlocked = true;
      stream.pause();
      stream.once('drain', () => {
        writeBlocked = false;
        pump();
      });
    }
  };

  const pump = (): void => {
    while (!waiting && !closed && queue.length > 0) {
      const request = queue.shift() as PolicyRequest;
      let answer: Uint8Array | Promise<Uint8Array>;
      try {
        answer = handler.onRequest(request);
      } catch (error) {
        handler.onHandlerError(error);
        close();
        return;
      }
      if (answer instanceof Uint8Array) {
        send(answer);
        continue;
      }
      waiting = true;
      answer.then(
        (reply) => {
          waiting = false;
          send(reply);
          pump();
        },
        (error: unknown) => {
          waiting = false;
          handler.onHandlerError(error);
          close();
        },
      );
      return;
    }
    if (!closed && !writeBlocked && queue.length < maxQueued && stream.isPaused()) stream.resume();
  };

  stream.on('data', (chunk: Buffer) => {
    if (closed) return;
    for (const result of decoder.push(chunk)) {
      if (result.kind === 'error') {
        handler.onProtocolError(result.code, result.detail);
        close();
        return;
      }
      queue.push(result.request);
    }
    if (queue.length >= maxQueued) stream.pause();
    pump();
  });
  stream.on('close', () => {
    closed = true;
    queue.length = 0;
  });

  return {
    get inFlight() {
      return queue.length + (waiting ? 1 : 0);
    },
  };
}
