/**
 * verdict - what Levee answers, before any protocol formats it.
 *
 * A closed union turned into `action=...` (policy) or `SMFIR_*` (milter) only
 * at the edge, by one formatter per protocol.
 */

export type Action = 'continue' | 'accept' | 'tempfail' | 'reject' | 'discard' | 'quarantine';

export const ACTIONS: readonly Action[] = ['continue', 'accept', 'tempfail', 'reject', 'discard', 'quarantine'];

/** Why a rate limit fired: the counter, its value and its limit. */
export interface CounterEvidence {
  readonly rule: string;
  readonly key: string;
  readonly count: number;
  readonly limit: number;
  readonly windowMs: number;
}

export interface Verdict {
  readonly action: Action;
  /** SMTP reply code (4xx for tempfail, 5xx for reject); set for tempfail/reject. */
  readonly code?: number;
  /** RFC 3463 enhanced status code, class matching `code` (e.g. "5.7.1"). */
  readonly enhancedCode?: string;
  /** Reply text: no CR, LF or NUL. */
  readonly text?: string;
  /** Name of the rule that decided; undefined for the default. */
  readonly rule?: string;
  /** The counter that tripped, when a rate limit decided. */
  readonly counter?: CounterEvidence;
  /** Rules in `warn` mode that would have acted (shadow mode). */
  readonly warnings?: readonly WouldHaveActed[];
  /** Headers to add to the message (milter: at end of message; policy: PREPEND). */
  readonly addHeaders?: readonly HeaderToAdd[];
  /** Tarpit: how long to wait before answering, ms. */
  readonly delayMs?: number;
}

export interface HeaderToAdd {
  readonly name: string;
  /** One line, or folded with "\n\t" (never CRLF: milter pitfall C.12). */
  readonly value: string;
}

export interface WouldHaveActed {
  readonly rule: string;
  readonly action: Action;
  readonly counter?: CounterEvidence;
}

/** The verdict when no rule decides. */
export const CONTINUE: Verdict = { action: 'continue' };
