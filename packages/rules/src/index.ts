/**
 * @levee/rules - facts -> verdict: config schema and loading, rule
 * compilation and evaluation, sliding-window arithmetic and the counter-store
 * port. Pure: no sockets, no files, no clock (`now` is always passed in).
 */

export type { AttachmentFact, Facts, FactsDraft, HeaderFact, MessageFacts, Protocol, Stage } from './facts.js';
export { clientIpOf, STAGES } from './facts.js';
export type { Action, CounterEvidence, HeaderToAdd, Verdict, WouldHaveActed } from './verdict.js';
export { ACTIONS, CONTINUE } from './verdict.js';

export type { Cidr, CidrMatcher, IpAddress, IpFamily } from './ip.js';
export { canonicalIp, parseCanonicalIp, cidrContains, cidrHasHostBits, compileCidrList, formatCidr, formatIp, networkKey, parseCidr, parseIp } from './ip.js';

export type { WindowSpec, WindowState } from './sliding-window.js';
export {
  addToWindow,
  advanceWindow,
  bucketWidth,
  createWindowState,
  DEFAULT_BUCKETS,
  effectiveWindowMs,
  MAX_BUCKET_COUNT,
  retryAfterMs,
  windowTotal,
} from './sliding-window.js';

export type { CounterHit, CounterRead, CounterStore, DegradedTotals } from './counter-store.js';
export { isDegraded, markDegraded } from './counter-store.js';

export { formatDuration, MAX_DURATION_MS, parseDuration } from './duration.js';
export type { Reply } from './reply.js';
export { completeReply, MAX_REPLY_TEXT, replyClassForAction, validateReply, validateReplyText } from './reply.js';
export type { PatternField, PatternMatcher } from './string-pattern.js';
export { checkPattern, compilePatterns, MAX_REGEX_SOURCE, MAX_TESTED_LENGTH } from './string-pattern.js';
export { MAX_TRADING_QUANTIFIERS, regexBacktrackingProblem } from './regex-safety.js';
export type { FieldPlaceholder, KeyTemplate, TemplateParseResult, TemplatePart } from './key-template.js';
export { DEFAULT_NETWORK_V4, DEFAULT_NETWORK_V6, FIELD_PLACEHOLDERS, MAX_KEY_VALUE, parseKeyTemplate } from './key-template.js';

export type {
  Conditions,
  CounterBackend,
  CounterSettings,
  CountMode,
  FailAction,
  HostPort,
  BatvSettings,
  LeveeConfig,
  HeldSettings,
  NotifySettings,
  LimitConfig,
  ListenAddress,
  LogLevel,
  NumberRange,
  RedactField,
  RedisSettings,
  RuleConfig,
  RuleMode,
  StoreErrorAction,
} from './config-schema.js';
export {
  configSchema,
  DEFAULT_BREAKER_COOL_DOWN,
  DEFAULT_DROP_COMMAND,
  DEFAULT_RELEASE_COMMAND,
  DEFAULT_BREAKER_FAILURES,
  DEFAULT_IDLE_TIMEOUT,
  DEFAULT_MAX_CONNECTIONS,
  DEFAULT_MILTER_IDLE_TIMEOUT,
  DEFAULT_MAX_KEYS,
  DEFAULT_METRICS_LISTEN,
  DEFAULT_MILTER_LISTEN,
  DEFAULT_POLICY_LISTEN,
  DEFAULT_REDIS_KEY_PREFIX,
  DEFAULT_REDIS_TIMEOUT,
  DEFAULT_SNAPSHOT_INTERVAL,
  parseHostPort,
  parseListenAddress,
  REDACT_FIELDS,
} from './config-schema.js';
export type { ConfigIssue, ConfigLoadResult } from './config-load.js';
export { formatConfigIssue, loadConfig } from './config-load.js';
export { DEFAULT_CONFIG_YAML } from './default-config.js';
export type { ConfigOption, ConfigSection, JsonNode, OptionMeta } from './config-reference.js';
export { allowedText, configJsonSchema, configReferenceMarkdown, configSections, flattenOptions, formatConfigReference, typeText } from './config-reference.js';

export type { CompiledCondition, CompiledLimit, CompiledRule, RuleOutcome, RuleTrace, Ruleset, StageGaps } from './rules-compile.js';
export { compileRules, countAmount, isTaggingRule } from './rules-compile.js';
export type { ContainInput, CounterPlan, Decision } from './decide.js';
export { decide, decideWithStore, planCounters } from './decide.js';
export type { ConfigWarning } from './config-warnings.js';
export { configWarnings } from './config-warnings.js';
export type { DirectoryIssue, DirectoryParseResult, RecipientDirectory, RecipientStatus } from './recipient-directory.js';
export { classifyRecipient, parseRecipientDirectory } from './recipient-directory.js';
export type { LoadReadings, Signal, Tier, TierPolicy, TierState, TierThresholds } from './load-tier.js';
export { DEFAULT_TIER_POLICY, INITIAL_TIER_STATE, stepTier, tierCalledFor, TIERS } from './load-tier.js';
export type { BlockEntry, BlockList, BlockLookup } from './block-list.js';
export { blockedBy, compileBlockList, liveBlocks, normaliseNetwork } from './block-list.js';
export type { BatvCheck, BatvKey } from './batv.js';
export { batvSign, batvStrip, batvVerify } from './batv.js';
export type { ContainEffect, ContainEvent, ContainmentChange, ContainmentReader, ContainPolicy, ContainState, ContainStep } from './containment.js';
export { containStateTtlMs, containStep, liveContainState } from './containment.js';
