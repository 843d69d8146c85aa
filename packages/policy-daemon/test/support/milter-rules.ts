/** The rules both real-MTA milter tests (Postfix and sendmail) run Levee with. */
export const MILTER_E2E_RULES = `
rules:
  - name: unknown-user
    stage: rcpt
    match: { recipient: ["/^nobody@/"] }
    action: reject
    code: 550
    enhanced_code: "5.1.1"
    text: "No such user here"
  - name: busy
    stage: rcpt
    match: { recipient: ["@busy.example"] }
    action: tempfail
    code: 451
    enhanced_code: "4.7.1"
    text: "Busy, try again later"
  - name: worm
    stage: eom
    match: { attachment_name: [".pif", ".scr", ".exe"] }
    action: discard
  - name: hold
    stage: eom
    match: { header: { Subject: ["/^hold me/i"] } }
    action: quarantine
    text: "held for review by levee"
  - name: backscatter
    description: a bounce for mail that never passed our MX (its returned headers show no hop of ours)
    stage: eom
    match: { null_sender: true, returns_headers: true }
    unless: { returned_received: ['/\\bmx1\\.example\\.org\\b/i'] }
    action: reject
    code: 550
    enhanced_code: "5.7.1"
    text: "Bounce for mail we never sent"
  - name: tag
    stage: eom
    action: continue
    add_header: "X-Levee: checked"
`;
