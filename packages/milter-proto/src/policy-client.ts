/**
 * policy-client - the Postfix side of the policy protocol, for tests, tools
 * (`levee explain`, `levee replay`) and load generators.
 *
 * Requests go out in order on one stream and replies are matched in FIFO
 * order, as Postfix does with one request outstanding per connection; callers
 * may also pipeline. Each request has a deadline; on a timeout, a protocol
 * error or a closed stream every outstanding request fails and the stream is
 * destroyed (a late reply could otherwise be matched to the wrong request).
 */

import type { Duplex } from 'node:stream';
import { createPolicyDecoder, DEFAULT_POLICY_LIMITS, encodePolicyAttributes } from './policy-codec.js';

export interface PolicyReply {
  /** The `action=` value. */
  readonly action: string;
  /** Every attribute of the reply, `action` included. */
  readonly attributes: Readonly<Record<string, string>>;
}

export interface PolicyClient {
  request(attributes: Readonly<Record<string, string | number | undefined>>): Promise<PolicyReply>;
  readonly outstanding: number;
  close(): void;
}

interface Pending {
  resolve(reply: PolicyReply): void;
  reject(error: Error): void;
  timer: NodeJS.Timeout | undefined;
}

export interface PolicyClientOptions {
  /** Per-request deadline in ms; 0 disables it. */
  readonly timeoutMs?: number;
}

/** createPolicyClient - speak the client side of the policy protocol on `stream`. */
export function createPolicyClient(stream: Duplex, options: PolicyClientOptions = {}): PolicyClient {
  const timeoutMs = options.timeoutMs ?? 10_000;
  const decoder = createPolicyDecoder(DEFAULT_POLICY_LIMITS);
  const pending: Pending[] = [];
  let failure: Error | undefined;

  const failAll = (error: Error): void => {
    failure ??= error;
    for (const p of pending.splice(0)) {
      if (p.timer !== undefined) clearTimeout(p.timer);
      p.reject(error);
    }
    stream.destroy();
  };

  stream.on('data', (chunk: Buffer) => {
    for (const result of decoder.push(chunk)) {
      if (result.kind === 'error') {
        failAll(new Error(`policy reply malformed: ${result.code}: ${result.detail}`));
        return;
      }
      const p = pending.shift();
      if (p === undefined) {
        failAll(new Error('policy server sent an unsolicited reply'));
        return;
      }
      if (p.timer !== undefined) clearTimeout(p.timer);
      const attributes: Record<string, string> = { ...result.request.unknown };
      for (const [k, v] of Object.entries(result.request)) if (k !== 'unknown' && typeof v === 'string') attributes[k] = v;
      const action = attributes['action'];
      if (action === undefined) p.reject(new Error('policy reply without action attribute'));
      else p.resolve({ action, attributes });
    }
  });
  stream.on('error', (error: Error) => failAll(error));
  stream.on('close', () => failAll(new Error('policy connection closed')));

  return {
    request(attributes) {
      if (failure !== undefined) return Promise.reject(failure);
      return new Promise<PolicyReply>((resolve, reject) => {
        const entry: Pending = { resolve, reject, timer: undefined };
        if (timeoutMs > 0) {
          entry.timer = setTimeout(() => failAll(new Error(`policy request timed out after ${timeoutMs} ms`)), timeoutMs);
        }
        pending.push(entry);
        stream.write(encodePolicyAttributes(attributes));
      });
    },
    get outstanding() {
      return pending.length;
    },
    close() {
      failAll(new Error('policy client closed'));
    },
  };
}
