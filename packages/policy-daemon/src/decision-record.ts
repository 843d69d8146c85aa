/**
 * decision-record - what every answered decision leaves behind, for both
 * protocols: the request and rule-hit metrics, the latency histogram and the
 * one JSON log line a postmaster reads like an smtpd line (with the values
 * log.redact names hidden: log-redaction.ts).
 */

import type { Facts, Protocol, Verdict } from '@levee/rules';
import { SHOW_ALL, type Redactor } from './log-redaction.js';
import type { Logger } from './logger.js';
import type { Metrics } from './metrics.js';

/** recordDecision - count and log one decision that took `seconds`; `redactor` hides what log.redact names. */
export function recordDecision(
  metrics: Metrics,
  log: Logger,
  protocol: Protocol,
  facts: Facts,
  verdict: Verdict,
  seconds: number,
  redactor: Redactor = SHOW_ALL,
): void {
  metrics.requestCount(protocol, facts.stage, verdict.action).inc();
  metrics.decisionTime(protocol).observe(seconds);
  if (verdict.rule !== undefined && verdict.rule !== 'fail-action') metrics.ruleHitCount(verdict.rule, verdict.action, 'enforce').inc();
  if (verdict.warnings !== undefined) for (const warning of verdict.warnings) metrics.ruleHitCount(warning.rule, warning.action, 'warn').inc();
  if (!log.isLevelEnabled('info')) return;
  log.info(
    {
      stage: facts.stage,
      client: facts.clientAddress,
      helo: facts.heloName,
      sender: redactor.show('sender', facts.sender),
      rcpt: redactor.show('recipient', facts.recipient),
      ...(facts.saslUsername === undefined || facts.saslUsername === '' ? {} : { sasl: redactor.show('sasl_username', facts.saslUsername) }),
      instance: facts.instance,
      queue_id: facts.queueId,
      action: verdict.action,
      rule: verdict.rule,
      ...(verdict.code === undefined ? {} : { reply: `${verdict.code} ${verdict.enhancedCode ?? ''} ${verdict.text ?? ''}` }),
      ...(verdict.counter === undefined ? {} : { counter: redactor.showCounter(verdict.counter) }),
      ...(verdict.addHeaders === undefined ? {} : { add_headers: verdict.addHeaders.map((h) => h.name) }),
      ...(verdict.warnings === undefined || verdict.warnings.length === 0
        ? {}
        : { warn: verdict.warnings.map((w) => (w.counter === undefined ? w : { ...w, counter: redactor.showCounter(w.counter) })) }),
      ...(facts.message === undefined ? {} : { attachments: facts.message.attachments.length, body_bytes: facts.message.bodyBytes }),
      ms: Math.round(seconds * 1e6) / 1e3,
    },
    'decision',
  );
}
