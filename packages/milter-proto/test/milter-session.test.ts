import {
  createMilterSession,
  DEFAULT_MILTER_LIMITS,
  endMilterSession,
  lookupMilterMacro,
  milterMacroValues,
  SMFI_CURR_ACTS,
  SMFI_CURR_PROT,
  SMFIP_NOMAIL,
  SMFIP_NR_BODY,
  SMFIP_NR_CONN,
  SMFIP_NR_DATA,
  SMFIP_NR_EOH,
  SMFIP_NR_HDR,
  SMFIP_NR_HELO,
  SMFIP_NR_MAIL,
  SMFIP_NR_RCPT,
  SMFIP_NR_UNKN,
  stepMilterSession,
  type MilterCommand,
  type MilterEvent,
  type MilterSessionConfig,
  type MilterSessionState,
  type MilterStep,
} from '../src/index.js';

const OPTNEG: MilterCommand = { type: 'OPTNEG', version: 6, actions: SMFI_CURR_ACTS, protocol: SMFI_CURR_PROT };
const CONNECT: MilterCommand = { type: 'CONNECT', hostname: 'client.example.net', family: '4', port: 41000, address: '198.51.100.7' };

/** Run commands through the session; returns the final state and every step. */
function run(commands: readonly MilterCommand[], config: Partial<MilterSessionConfig> = {}, from?: MilterSessionState): { state: MilterSessionState; steps: MilterStep[] } {
  let state = from ?? createMilterSession(config);
  const steps: MilterStep[] = [];
  for (const command of commands) {
    const step = stepMilterSession(state, command);
    steps.push(step);
    state = step.state;
  }
  return { state, steps };
}

const eventTypes = (steps: readonly MilterStep[]): string[] => steps.flatMap((s) => s.events.map((e: MilterEvent) => e.type));

/** A Postfix-like connection up to and including HELO. */
const OPENING: MilterCommand[] = [
  OPTNEG,
  { type: 'MACRO', stage: 'C', macros: [['j', 'mx.example.com'], ['{daemon_name}', 'mx.example.com'], ['{client_addr}', '198.51.100.7']] },
  CONNECT,
  { type: 'MACRO', stage: 'H', macros: [['{tls_version}', 'TLSv1.3']] },
  { type: 'HELO', helo: 'client.example.net' },
];

function message(n: number): MilterCommand[] {
  return [
    { type: 'MACRO', stage: 'M', macros: [['i', `QID${n}`], ['{auth_authen}', `user${n}`]] },
    { type: 'MAIL', args: [`<s${n}@example.net>`, 'SIZE=100'] },
    { type: 'MACRO', stage: 'R', macros: [['{rcpt_addr}', `r${n}@example.org`]] },
    { type: 'RCPT', args: [`<r${n}@example.org>`] },
    { type: 'DATA' },
    { type: 'HEADER', name: 'Subject', value: `message ${n}` },
    { type: 'EOH' },
    { type: 'BODY', chunk: Buffer.from('hello\r\n') },
    { type: 'MACRO', stage: 'E', macros: [['i', `QID${n}`]] },
    { type: 'BODYEOB' },
  ];
}

describe('milter session: connection vs message state', () => {
  test('ABORT resets the message only: CONNECT info, HELO and connection macros survive', () => {
    const { state, steps } = run([...OPENING, ...message(1).slice(0, 4), { type: 'ABORT' }]);
    expect(steps.at(-1)).toEqual(expect.objectContaining({ expectsReply: false, events: [{ type: 'abort' }] }));
    expect(state.message).toBeUndefined();
    expect(state.connection).toEqual({
      open: true,
      connect: { hostname: 'client.example.net', family: '4', port: 41000, address: '198.51.100.7' },
      helo: 'client.example.net',
      messages: 0,
    });
    expect(lookupMilterMacro(state, 'j')).toBe('mx.example.com');
    expect(lookupMilterMacro(state, '{daemon_name}')).toBe('mx.example.com');
    expect(lookupMilterMacro(state, 'tls_version')).toBe('TLSv1.3');
    expect(lookupMilterMacro(state, 'i')).toBeUndefined();
    expect(lookupMilterMacro(state, '{auth_authen}')).toBeUndefined();
    expect(lookupMilterMacro(state, '{rcpt_addr}')).toBeUndefined();
  });

  test('repeated ABORT is tolerated: no events, no reply, no error, same state', () => {
    const first = run([...OPENING, ...message(1).slice(0, 4), { type: 'ABORT' }]);
    const again = run([{ type: 'ABORT' }, { type: 'ABORT' }], {}, first.state);
    expect(again.steps.map((s) => [s.expectsReply, s.events])).toEqual([
      [false, []],
      [false, []],
    ]);
    expect(again.state).toEqual(first.state);
    // A message after the ABORTs works normally.
    const next = run(message(2), {}, again.state);
    expect(eventTypes(next.steps)).toEqual(['mail', 'rcpt', 'data', 'header', 'eoh', 'body', 'eom']);
  });

  test('two messages on one connection, with the Postfix ABORT after each', () => {
    const first = run([...OPENING, ...message(1)]);
    expect(first.state.message).toEqual({
      sender: { address: '<s1@example.net>', args: ['SIZE=100'] },
      recipients: [{ address: '<r1@example.org>', args: [] }],
      headers: [{ name: 'Subject', value: 'message 1' }],
      headerBytes: 'Subject'.length + 'message 1'.length,
      bodyBytes: 7,
      ended: true,
    });
    expect(lookupMilterMacro(first.state, 'i')).toBe('QID1');

    // ABORT after BODYEOB: no abort event (the message finished), state reset.
    const between = run([{ type: 'ABORT' }, ...message(2)], {}, first.state);
    expect(eventTypes(between.steps)).toEqual(['mail', 'rcpt', 'data', 'header', 'eoh', 'body', 'eom']);
    const { state } = between;
    expect(state.connection.messages).toBe(2);
    expect(state.message?.recipients).toEqual([{ address: '<r2@example.org>', args: [] }]);
    expect(state.message?.headers).toEqual([{ name: 'Subject', value: 'message 2' }]);
    expect(lookupMilterMacro(state, 'i')).toBe('QID2');
    expect(lookupMilterMacro(state, '{auth_authen}')).toBe('user2');
    expect(lookupMilterMacro(state, 'j')).toBe('mx.example.com'); // go-milter lost this for message 2 (pitfall C.19)
  });

  test('a new MAIL without ABORT aborts the unfinished message first', () => {
    const { steps, state } = run([...OPENING, ...message(1).slice(0, 4), ...message(2).slice(0, 2)]);
    expect(eventTypes(steps.slice(OPENING.length))).toEqual(['mail', 'rcpt', 'abort', 'mail']);
    expect(state.message?.recipients).toEqual([]);
  });

  test('a repeated HELO (after STARTTLS) replaces HELO and its macros, keeps CONNECT', () => {
    const { state } = run([
      ...OPENING,
      { type: 'MACRO', stage: 'H', macros: [] },
      { type: 'HELO', helo: 'again.example.net' },
    ]);
    expect(state.connection.helo).toBe('again.example.net');
    expect(state.connection.connect?.hostname).toBe('client.example.net');
    expect(lookupMilterMacro(state, '{tls_version}')).toBeUndefined();
  });

  test('QUIT mid-message aborts, then closes; anything after QUIT is an error', () => {
    const { steps, state } = run([...OPENING, ...message(1).slice(0, 4), { type: 'QUIT' }]);
    expect(steps.at(-1)).toEqual({ state, expectsReply: false, events: [{ type: 'abort' }, { type: 'close', reason: 'quit' }] });
    expect(state.phase).toBe('closed');
    const after = stepMilterSession(state, { type: 'HELO', helo: 'x' });
    expect(after.events).toEqual([{ type: 'error', code: 'after-quit', detail: expect.any(String) }]);
  });

  test('QUIT_NC forgets the connection and its macros, keeps the negotiation; a new CONNECT follows', () => {
    const { steps, state } = run([...OPENING, ...message(1), { type: 'QUIT_NC' }]);
    expect(steps.at(-1)?.events).toEqual([{ type: 'close', reason: 'quit-nc' }]);
    expect(state.phase).toBe('open');
    expect(state.connection).toEqual({ open: false, connect: undefined, helo: undefined, messages: 0 });
    expect(lookupMilterMacro(state, 'j')).toBeUndefined();
    const again = run([{ type: 'MACRO', stage: 'C', macros: [['j', 'mx2']] }, { ...CONNECT, hostname: 'other.example' }], {}, state);
    expect(eventTypes(again.steps)).toEqual(['connect']);
    expect(again.state.connection.connect?.hostname).toBe('other.example');
    expect(lookupMilterMacro(again.state, 'j')).toBe('mx2');
  });

  test('end of stream without QUIT aborts the open message and closes the connection', () => {
    const { state } = run([...OPENING, ...message(1).slice(0, 4)]);
    expect(endMilterSession(state).events).toEqual([{ type: 'abort' }, { type: 'close', reason: 'eof' }]);
    // Before any command, and after QUIT, there is nothing to close.
    expect(endMilterSession(createMilterSession()).events).toEqual([]);
    expect(endMilterSession(run([...OPENING, { type: 'QUIT' }]).state).events).toEqual([]);
  });

  test('message commands without MAIL (SMFIP_NOMAIL) start a message implicitly', () => {
    const config = { wanted: { actions: 0, protocol: SMFIP_NOMAIL } };
    const { state, steps } = run([OPTNEG, CONNECT, { type: 'RCPT', args: ['<a@b>'] }, { type: 'RCPT', args: ['<c@d>'] }], config);
    expect(eventTypes(steps)).toEqual(['negotiate', 'connect', 'rcpt', 'rcpt']);
    expect(state.message?.sender).toBeUndefined();
    expect(state.message?.recipients.map((r) => r.address)).toEqual(['<a@b>', '<c@d>']);
  });
});

describe('milter session: replies', () => {
  test('with nothing negotiated away, every event but MACRO/ABORT/QUIT expects a reply', () => {
    const { steps } = run([...OPENING, ...message(1), { type: 'UNKNOWN', command: 'HELP' }, { type: 'ABORT' }, { type: 'QUIT' }], {
      wanted: { actions: 0, protocol: 0 },
    });
    const replies = steps.map((s, i) => [[...OPENING, ...message(1), { type: 'UNKNOWN' }, { type: 'ABORT' }, { type: 'QUIT' }][i]?.type, s.expectsReply]);
    expect(replies).toEqual([
      ['OPTNEG', true],
      ['MACRO', false],
      ['CONNECT', true],
      ['MACRO', false],
      ['HELO', true],
      ['MACRO', false],
      ['MAIL', true],
      ['MACRO', false],
      ['RCPT', true],
      ['DATA', true],
      ['HEADER', true],
      ['EOH', true],
      ['BODY', true],
      ['MACRO', false],
      ['BODYEOB', true],
      ['UNKNOWN', true],
      ['ABORT', false],
      ['QUIT', false],
    ]);
  });

  test('no reply for commands covered by negotiated NR_* flags', () => {
    const nr = SMFIP_NR_CONN | SMFIP_NR_HELO | SMFIP_NR_MAIL | SMFIP_NR_RCPT | SMFIP_NR_DATA | SMFIP_NR_HDR | SMFIP_NR_EOH | SMFIP_NR_BODY | SMFIP_NR_UNKN;
    const commands = [...OPENING, ...message(1), { type: 'UNKNOWN', command: 'HELP' } as MilterCommand];
    const { steps } = run(commands, { wanted: { actions: 0, protocol: nr } });
    const expecting = steps.flatMap((s, i) => (s.expectsReply ? [commands[i]?.type] : []));
    expect(expecting).toEqual(['OPTNEG', 'BODYEOB']);
    // Events still happen: the handler sees them, it just may not answer.
    expect(eventTypes(steps)).toEqual(['negotiate', 'connect', 'helo', 'mail', 'rcpt', 'data', 'header', 'eoh', 'body', 'eom', 'unknown']);
  });

  test('NR_* not offered by the MTA (v4) are not in effect, so replies are expected', () => {
    const { steps } = run([{ type: 'OPTNEG', version: 4, actions: 0x1ff, protocol: 0x37f }, CONNECT, { type: 'RCPT', args: ['<a@b>'] }], {
      wanted: { actions: 0, protocol: SMFIP_NR_RCPT | SMFIP_NR_CONN },
    });
    expect(steps.map((s) => s.expectsReply)).toEqual([true, true, true]);
  });

  test('the negotiate event carries the OPTNEG reply', () => {
    const { steps } = run([OPTNEG]);
    expect(steps[0]?.events[0]).toEqual({
      type: 'negotiate',
      offer: { version: 6, actions: SMFI_CURR_ACTS, protocol: SMFI_CURR_PROT },
      agreed: expect.objectContaining({ version: 6, actions: 0x31 }),
      reply: expect.objectContaining({ type: 'OPTNEG', version: 6, actions: 0x31 }),
    });
  });
});

describe('milter session: macros', () => {
  test('`x` and `{x}` are one macro; empty values are values; later stages win', () => {
    const { state } = run([
      ...OPENING,
      { type: 'MACRO', stage: 'M', macros: [['{i}', 'QID'], ['{auth_authen}', ''], ['{client_addr}', 'shadow']] },
      { type: 'MAIL', args: ['<>'] },
    ]);
    expect(lookupMilterMacro(state, 'i')).toBe('QID');
    expect(lookupMilterMacro(state, '{auth_authen}')).toBe('');
    expect(lookupMilterMacro(state, '{client_addr}')).toBe('shadow');
    expect(milterMacroValues(state)).toEqual(
      expect.objectContaining({ j: 'mx.example.com', daemon_name: 'mx.example.com', i: 'QID', auth_authen: '', client_addr: 'shadow' }),
    );
  });

  test('a macro named __proto__ is just a macro', () => {
    const { state } = run([OPTNEG, { type: 'MACRO', stage: 'C', macros: [['__proto__', 'x']] }, CONNECT]);
    expect(lookupMilterMacro(state, '__proto__')).toBe('x');
    expect(lookupMilterMacro(state, 'toString')).toBeUndefined();
  });

  test('MACRO for a disabled command is still stored (MTAs send it anyway)', () => {
    const { state } = run([OPTNEG, { type: 'MACRO', stage: 'C', macros: [['j', 'mx']] }]);
    expect(lookupMilterMacro(state, 'j')).toBe('mx');
  });
});

describe('milter session: errors and limits', () => {
  test('a command before OPTNEG', () => {
    const { steps, state } = run([CONNECT]);
    expect(steps[0]?.events).toEqual([{ type: 'error', code: 'not-negotiated', detail: expect.any(String) }]);
    expect(state.phase).toBe('failed');
    expect(run([OPTNEG], {}, state).steps[0]?.events[0]).toEqual(expect.objectContaining({ code: 'after-error' }));
  });

  test('a second OPTNEG, a second CONNECT, an unsupported version', () => {
    expect(run([OPTNEG, OPTNEG]).steps[1]?.events[0]).toEqual(expect.objectContaining({ type: 'error', code: 'repeated-optneg' }));
    expect(run([OPTNEG, CONNECT, CONNECT]).steps[2]?.events[0]).toEqual(expect.objectContaining({ type: 'error', code: 'out-of-order' }));
    expect(run([{ ...OPTNEG, version: 5 } as MilterCommand]).steps[0]?.events[0]).toEqual(expect.objectContaining({ type: 'error', code: 'unsupported-version' }));
  });

  test('maxRecipientsPerMessage counts per message', () => {
    const limits = { ...DEFAULT_MILTER_LIMITS, maxRecipientsPerMessage: 3 };
    const rcpts = (n: number): MilterCommand[] => Array.from({ length: n }, (_, i) => ({ type: 'RCPT', args: [`<r${i}@x>`] }) as MilterCommand);
    const ok = run([OPTNEG, CONNECT, { type: 'MAIL', args: ['<>'] }, ...rcpts(3), { type: 'ABORT' }, { type: 'MAIL', args: ['<>'] }, ...rcpts(3)], { limits });
    expect(ok.state.phase).toBe('open');
    const tooMany = run([OPTNEG, CONNECT, { type: 'MAIL', args: ['<>'] }, ...rcpts(4)], { limits });
    expect(tooMany.steps.at(-1)?.events).toEqual([{ type: 'error', code: 'too-many-recipients', detail: expect.stringContaining('3') }]);
    expect(tooMany.state.phase).toBe('failed');
  });

  test('maxHeadersPerMessage and maxHeaderBytesPerMessage', () => {
    const header = (value: string): MilterCommand => ({ type: 'HEADER', name: 'X', value });
    const count = run([OPTNEG, CONNECT, header('a'), header('b'), header('c')], { limits: { ...DEFAULT_MILTER_LIMITS, maxHeadersPerMessage: 2 } });
    expect(count.steps.at(-1)?.events[0]).toEqual(expect.objectContaining({ code: 'too-many-headers' }));
    const bytes = run([OPTNEG, CONNECT, header('a'.repeat(10)), header('b'.repeat(10))], { limits: { ...DEFAULT_MILTER_LIMITS, maxHeaderBytesPerMessage: 20 } });
    expect(bytes.steps.at(-1)?.events[0]).toEqual(expect.objectContaining({ code: 'headers-too-large' }));
  });

  test('steps are pure: the input state is not modified', () => {
    const { state } = run([...OPENING, ...message(1).slice(0, 4)]);
    const snapshot = JSON.stringify(state, (_k, v: unknown) => (v instanceof Uint8Array ? Buffer.from(v).toString('hex') : v));
    for (const command of [...message(1).slice(4), { type: 'ABORT' } as MilterCommand, { type: 'QUIT_NC' } as MilterCommand]) stepMilterSession(state, command);
    expect(JSON.stringify(state, (_k, v: unknown) => (v instanceof Uint8Array ? Buffer.from(v).toString('hex') : v))).toBe(snapshot);
    expect(lookupMilterMacro(state, 'i')).toBe('QID1');
  });
});
