// Config regexes that can backtrack catastrophically are refused at load,
// with the rule, the pattern and its position; harmless ones load.
import { formatConfigIssue, loadConfig, MAX_TESTED_LENGTH, MAX_TRADING_QUANTIFIERS, regexBacktrackingProblem } from '../src/index.js';

describe('regexBacktrackingProblem', () => {
  test.each([
    // nested quantifiers (star height 2)
    ['(a+)+$', 'exponential time on a long run of "a"'],
    ['(a*)*b', 'exponential time on a long run of "a"'],
    ['(\\w+\\s?)*$', 'exponential time'],
    ['(x+x+)+y', 'exponential time'],
    ['^(?:\\d+|\\d+\\.)*$', 'exponential time'],
    ['(?=.*x)(\\w+\\s?)*$', 'exponential time'],
    // overlapping alternation under a star
    ['^(a|a)*$', 'exponential time, the repeated (a|a) can match the same text in more than one way'],
    ['^(\\w|\\d)+$', 'the repeated (\\w|\\d) can match the same text in more than one way'],
    ['^(a|aa)+$', 'the repeated (a|aa) can match the same text in more than one way (through "aa")'],
    ['^(foo|bar|foobar)+$', 'can match the same text in more than one way (through "foobar")'],
    ['^(?:x(a|a))*$', 'inside a repetition, "a" and "a" can match the same text'],
    // more than two quantifiers trading characters: polynomial of a high degree
    ['=.*=.*=.*;', '3 quantifiers backtrack against each other'],
    ['^(.*),(.*),(.*)$', '3 quantifiers backtrack against each other'],
  ])('known-bad %s', (source, why) => {
    const problem = regexBacktrackingProblem(source, '');
    expect(problem).toContain('can backtrack catastrophically');
    expect(problem).toContain(why);
  });

  test('the message offers an equivalent regex when there is a simple one', () => {
    expect(regexBacktrackingProblem('(x+x+)+y', '')).toContain('an equivalent regex without it: /(x{2,})+y/');
  });

  test.each([
    '\\.exe$',
    'virus found',
    '\\b(virus|worm|infect(ed|ion))\\b.*\\b(found|detected|alert|notification)\\b',
    '^[^@]+@example\\.com$',
    '^([a-z0-9-]+\\.)*example\\.com$',
    '^(?:a|b)*c$',
    '^(a|ab)*$',
    '\\bviagra\\b',
    '^\\s*$',
    '^\\[?[0-9.]+\\]?$',
    '^(?:[a-z0-9!#$%&\'*+/=?^_`{|}~-]+(?:\\.[a-z0-9!#$%&\'*+/=?^_`{|}~-]+)*)@(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\\.)+[a-z]{2,}$',
    '(?<=x)y',
    '^(?!.*@example\\.com$).*$',
    '(?:\\s*,\\s*[a-z]+)*',
  ])('known-good %s is accepted', (source) => {
    expect(regexBacktrackingProblem(source, 'i')).toBeUndefined();
  });

  test(`${MAX_TRADING_QUANTIFIERS} quantifiers trading are accepted: polynomial, and the input is cut to ${MAX_TESTED_LENGTH} characters`, () => {
    expect(regexBacktrackingProblem('^(.*),(.*)$', '')).toBeUndefined();
    expect(regexBacktrackingProblem('^\\d*\\d*x$', '')).toBeUndefined();
    expect(regexBacktrackingProblem('a.*b.*c', 'i')).toBeUndefined();
  });
});

describe('at config load', () => {
  const load = (yaml: string) => loadConfig(yaml, 'levee.yaml');

  test('an unsafe regex is an error at its file:line:col naming the rule and the pattern', () => {
    const r = load(
      [
        'rules:',
        '  - name: ok-rule',
        '    match: { sender: ["@example.com", "/^[a-z]+@example\\\\.com$/"] }',
        '    action: accept',
        '  - name: av-notice',
        '    match:',
        '      header:',
        '        Subject: ["/virus/", "/(\\\\w+\\\\s?)*found$/i"]',
        '    action: reject',
        '',
      ].join('\n'),
    );
    const lines = r.ok ? [] : r.issues.map(formatConfigIssue);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(
      /^levee\.yaml:8:30: rules\.1\.match\.header\.Subject\.1: rule av-notice: regex \/\(\\w\+\\s\?\)\*found\$\/i can backtrack catastrophically: exponential time on a long run of "/,
    );
  });

  test('unless and limit.count_if are checked too; a single pattern points at its value', () => {
    const r = load(
      [
        'rules:',
        '  - name: r1',
        '    unless: { helo_name: "/^(a|a)*$/" }',
        '    action: reject',
        '  - name: r2',
        '    limit:',
        '      key: "{client_address}"',
        '      max: 3',
        '      window: 60s',
        '      count_if: { recipient: ["/=.*=.*=.*;/"] }',
        '    action: tempfail',
        '',
      ].join('\n'),
    );
    const lines = r.ok ? [] : r.issues.map(formatConfigIssue);
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(/^levee\.yaml:3:\d+: rules\.0\.unless\.helo_name: rule r1: regex \/\^\(a\|a\)\*\$\/ can backtrack catastrophically: exponential/);
    expect(lines[1]).toMatch(/^levee\.yaml:10:\d+: rules\.1\.limit\.count_if\.recipient\.0: rule r2: regex \/=\.\*=\.\*=\.\*;\/ can backtrack catastrophically: 3 quantifiers backtrack against each other/);
  });

  test('safe regexes load and match as before', () => {
    const r = load('rules:\n  - name: exe\n    match: { attachment_name: ["/\\\\.(exe|scr|pif)$/i"], sender: ["/^[^@]+@example\\\\.com$/"] }\n    action: discard\n');
    expect(r.ok).toBe(true);
  });
});
