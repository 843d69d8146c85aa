/**
 * policy-service - answer Postfix policy connections: decode, turn requests
 * into Facts, decide, log one line, count, reply.
 *
 * Whatever goes wrong inside a decision, the MTA gets the configured fail
 * action, never silence: silence costs Postfix a 100 s timeout per request.
 * Only malformed bytes close the connection (SMTPD_POLICY_README: "log a
 * warning and disconnect").
 */

import { performance } from 'node:perf_hooks';
import type { Socket } from 'node:net';
import { servePolicyConnection, type PolicyConnection, type PolicyLimits, type PolicyRequest } from '@levee/milter-proto';
import type { FailAction, Facts, Verdict } from '@levee/rules';
import { decideFacts, failVerdict, type DeciderDeps, type DecisionOutcome } from './decider.js';
import { recordDecision } from './decision-record.js';
import type { Redactor } from './log-redaction.js';
import type { Logger } from './logger.js';
import type { Metrics } from './metrics.js';
import { policyRequestToFacts } from './policy-facts.js';
import { encodeVerdict } from './policy-verdict.js';

export interface PolicyServiceOptions {
  readonly decider: DeciderDeps;
  readonly metrics: Metrics;
  readonly log: Logger;
  /** Read per request, so a reload takes effect at once. */
  readonly settings: () => { readonly failAction: FailAction; readonly idleTimeoutMs: number };
  /** What log lines may show (log.redact); read per decision, like settings. */
  readonly redactor?: () => Redactor;
  readonly limits?: PolicyLimits;
}

export interface PolicyService {
  /** Handle one accepted connection. */
  accept(socket: Socket): void;
  /** Open connections. */
  readonly connections: ReadonlySet<Socket>;
  /** End idle connections now and busy ones right after their reply. */
  drain(): void;
}

/** createPolicyService - the per-connection logic of the policy listener. */
export function createPolicyService(options: PolicyServiceOptions): PolicyService {
  const { decider, metrics, log } = options;
  const connections = new Map<Socket, PolicyConnection>();
  let draining = false;
  let nextConnectionId = 1;
  const connectionGauge = metrics.connections.labels('policy');

  function accept(socket: Socket): void {
    const cid = nextConnectionId++;
    const connLog = log.child({ proto: 'policy', cid });
    if (draining) {
      socket.destroy();
      return;
    }
    connectionGauge.inc();
    socket.setTimeout(options.settings().idleTimeoutMs, () => {
      connLog.debug('idle timeout, closing');
      socket.destroy();
    });
    socket.on('error', (error) => connLog.debug({ err: error.message }, 'connection error'));
    socket.once('close', () => {
      connections.delete(socket);
      connectionGauge.dec();
    });

    const answer = (facts: Facts, started: number, outcome: DecisionOutcome): Buffer | Promise<Buffer> => {
      let verdict: Verdict;
      if (outcome.ok) {
        verdict = outcome.decision.verdict;
      } else {
        metrics.internalErrors.labels('policy').inc();
        connLog.error({ err: String(outcome.error) }, 'decision failed, answering the fail action');
        verdict = failVerdict(options.settings().failAction);
      }
      const reply = encodeVerdict(verdict, facts.stage);
      const seconds = (performance.now() - started) / 1000;
      recordDecision(metrics, connLog, 'policy', facts, verdict, seconds, options.redactor?.());
      // Tarpit: hold the answer back; the connection's next request waits behind it.
      const delayMs = verdict.delayMs ?? 0;
      if (delayMs <= 0) return reply;
      return new Promise<Buffer>((resolve) => setTimeout(() => resolve(reply), delayMs));
    };

    const connection = servePolicyConnection(
      socket,
      {
        onRequest(request: PolicyRequest) {
          const started = performance.now();
          const converted = policyRequestToFacts(request);
          if (!converted.ok) {
            metrics.protocolErrors.labels('policy', 'bad-request').inc();
            connLog.warn({ problem: converted.problem }, 'request cannot be decided, answering the fail action');
            return encodeVerdict(failVerdict(options.settings().failAction), 'connect');
          }
          const outcome = decideFacts(converted.facts, decider);
          if (outcome instanceof Promise) return outcome.then((resolved) => answer(converted.facts, started, resolved));
          return answer(converted.facts, started, outcome);
        },
        onProtocolError(code, detail) {
          metrics.protocolErrors.labels('policy', code).inc();
          // The excerpt of a bad line may carry any attribute's value: left out when log.redact is set.
          const shown = (options.redactor?.().fields.size ?? 0) > 0 ? {} : { detail };
          connLog.warn({ code, ...shown, peer: socket.remoteAddress }, 'malformed policy request, closing the connection');
        },
        onHandlerError(error) {
          metrics.internalErrors.labels('policy').inc();
          connLog.error({ err: String(error) }, 'policy handler failed, closing the connection');
        },
        onReplied() {
          if (draining && connection.inFlight === 0) socket.end();
        },
      },
      options.limits === undefined ? {} : { limits: options.limits },
    );
    connections.set(socket, connection);
  }

  function drain(): void {
    draining = true;
    for (const [socket, connection] of connections) if (connection.inFlight === 0) socket.end();
  }

  return {
    accept,
    get connections() {
      return new Set(connections.keys());
    },
    drain,
  };
}
