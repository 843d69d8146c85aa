/**
 * default-config - Levee's embedded configuration: what `levee run` uses
 * without `--config`, and a commented starting point for a levee.yaml.
 *
 * The built-in rules are deliberately conservative: they only tempfail (4xx),
 * so a limit set too low delays mail instead of losing it, and every limit is
 * far above what a legitimate single client does. All count at the RCPT stage,
 * where Postfix setups call the policy service (smtpd_recipient_restrictions)
 * and milters see each recipient.
 */

export const DEFAULT_CONFIG_YAML = `# Levee built-in configuration.
# Durations: 500ms, 60s, 5m, 1h, 1d or a number of milliseconds.
# Every option: docs/configuration-reference.md; all of them in a commented
# file: deploy/examples/levee.yaml.

listen:
  # Postfix: check_policy_service inet:127.0.0.1:10031
  policy: ["inet:127.0.0.1:10031"]
  # Postfix smtpd_milters / sendmail INPUT_MAIL_FILTER: inet:8891@127.0.0.1
  milter: ["inet:127.0.0.1:8891"]

metrics:
  # Prometheus /metrics; false turns it off.
  listen: "127.0.0.1:9469"

counters:
  backend: memory
  # LRU bound: a flood of random client addresses evicts old keys
  # instead of exhausting memory.
  max_keys: 1000000

log:
  level: info
  # Show SASL user names (and, if listed, senders and recipients) as keyed
  # hashes in logs and admin output; see docs/security.md.
  # redact: [sasl_username]

policy:
  # On an internal error answer "continue" (DUNNO): a bug in Levee must not stop mail.
  fail_action: continue
  # Just above Postfix's smtpd_policy_service_max_idle (300s), so Postfix closes first.
  idle_timeout: 330s

# Rules run in order. A rule without a limit decides as soon as it applies;
# a limit rule decides when its counter goes over max.
rules:
  # One client address sending to very many recipients in a minute is a
  # spam run or a compromised host, not a person. 200/min is well above any
  # legitimate single sender host talking to one MX. Local submission
  # (loopback) and authenticated users (who have their own limit below) are
  # not counted here.
  - name: client-recipient-rate
    description: Recipients per client IP address per minute
    stage: rcpt
    match:
      authenticated: false
    unless:
      client_address: ["127.0.0.0/8", "::1"]
    limit:
      key: "{client_address}"
      max: 200
      window: 60s
      count: recipients
    action: tempfail
    code: 450
    enhanced_code: "4.7.1"
    text: "Too many recipients from your address, slow down and try again later"

  # Botnets and snowshoe spammers spread over a whole network to stay under
  # per-address limits. An IPv6 client can pick any address in its /64, so
  # for IPv6 the /64 is the unit, like the /24 for IPv4.
  - name: network-recipient-rate
    description: Recipients per client /24 (IPv4) or /64 (IPv6) per minute
    stage: rcpt
    match:
      authenticated: false
    unless:
      client_address: ["127.0.0.0/8", "::1"]
    limit:
      key: "{client_network/24,64}"
      max: 1000
      window: 60s
      count: recipients
    action: tempfail
    code: 450
    enhanced_code: "4.7.1"
    text: "Too many recipients from your network, slow down and try again later"

  # A burst of bounces (null sender <>) from one client is backscatter from
  # someone forging our users' addresses. Legitimate bounces are few and are
  # retried by the sender, so a tempfail costs them only a delay.
  - name: null-sender-rate
    description: Bounces (null sender) per client IP address per 10 minutes
    stage: rcpt
    match:
      null_sender: true
    unless:
      client_address: ["127.0.0.0/8", "::1"]
    limit:
      key: "{client_address}"
      max: 30
      window: 10m
      count: recipients
    action: tempfail
    code: 450
    enhanced_code: "4.7.1"
    text: "Too many bounces from your address, try again later"

  # Anti-virus gateways mail "virus found" notices to the forged sender of a
  # worm, i.e. to people who sent nothing: backscatter. Dropped, never
  # bounced. Needs the milter (it reads the Subject).
  - name: av-notifications
    description: Anti-virus notifications about mail our users never sent
    stage: eom
    match:
      header:
        Subject: ['/\\b(virus|worm|infect(ed|ion))\\b.*\\b(found|detected|alert|notification)\\b/i', '/^(virus|security) (alert|warning)/i']
    action: discard
    text: "anti-virus notification dropped by levee"

  # Auto-replies (vacation, "out of office", RFC 3834 Auto-Submitted:
  # auto-replied) to mail our users never sent: a worm forged their address.
  # Dropped by default, which also drops genuine vacation replies to your
  # users; with BATV on (batv: section), replies to mail that really left here
  # carry a valid signature and are kept.
  - name: auto-replies
    description: RFC 3834 auto-replies to mail our users did not send
    stage: eom
    match:
      header:
        Auto-Submitted: ['/^auto-replied/i']
    unless: { batv: [valid] }
    action: discard
    text: "auto-reply dropped by levee"
  - name: auto-replies-legacy
    description: Auto-replies marked the pre-RFC 3834 way
    stage: eom
    match:
      header:
        X-Autoreply: ['/./']
    unless: { batv: [valid] }
    action: discard
    text: "auto-reply dropped by levee"

  # An authenticated account sending to 1000 recipients in an hour has
  # almost always had its password stolen. Tempfail keeps the spam in the
  # sender's queue, not ours, while the postmaster looks.
  - name: sasl-user-recipient-rate
    description: Recipients per authenticated user per hour
    stage: rcpt
    match:
      authenticated: true
    limit:
      key: "{sasl_username}"
      max: 1000
      window: 1h
      count: recipients
    action: tempfail
    code: 450
    enhanced_code: "4.7.1"
    text: "Sending limit for your account reached, try again later"
`;
