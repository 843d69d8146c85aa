import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import {
  createPolicyDecoder,
  DEFAULT_POLICY_LIMITS,
  encodePolicyAttributes,
  encodePolicyRequest,
  POLICY_ATTRIBUTE_NAMES,
  type PolicyDecodeResult,
  type PolicyRequest,
} from '../src/index.js';

interface Vector {
  name: string;
  input: string;
  requests: Record<string, unknown>[];
  error?: string;
}
// Vectors are data: read as a file so they stay language-neutral JSON.
const vectors = (JSON.parse(readFileSync(join(__dirname, 'vectors/policy-requests.json'), 'utf8')) as { vectors: Vector[] }).vectors;

function plain(request: PolicyRequest): Record<string, unknown> {
  return { ...request, unknown: { ...request.unknown } };
}

function decodeAll(input: Buffer, splitAt: readonly number[] = []): PolicyDecodeResult[] {
  const decoder = createPolicyDecoder();
  const out: PolicyDecodeResult[] = [];
  let from = 0;
  for (const cut of [...splitAt, input.length]) {
    out.push(...decoder.push(input.subarray(from, cut)));
    from = cut;
  }
  return out;
}

function summarise(results: PolicyDecodeResult[]): { requests: Record<string, unknown>[]; error?: string } {
  const requests = results.flatMap((r) => (r.kind === 'request' ? [plain(r.request)] : []));
  const error = results.find((r) => r.kind === 'error');
  return error?.kind === 'error' ? { requests, error: error.code } : { requests };
}

describe('policy decoder vectors', () => {
  test.each(vectors.map((v) => [v.name, v] as const))('%s', (_name, vector) => {
    const input = Buffer.from(vector.input, 'utf8');
    const expected = vector.error === undefined ? { requests: vector.requests } : { requests: vector.requests, error: vector.error };
    expect(summarise(decodeAll(input))).toEqual(expected);
    // The same bytes one at a time must decode identically.
    const everyByte = Array.from({ length: input.length - 1 }, (_, i) => i + 1);
    expect(summarise(decodeAll(input, everyByte))).toEqual(expected);
  });
});

describe('policy decoder limits', () => {
  test('a line longer than maxLineBytes fails even before its newline arrives', () => {
    const decoder = createPolicyDecoder({ ...DEFAULT_POLICY_LIMITS, maxLineBytes: 64 });
    expect(decoder.push(Buffer.from('sender=' + 'a'.repeat(50)))).toEqual([]);
    const results = decoder.push(Buffer.from('a'.repeat(10)));
    expect(results).toEqual([expect.objectContaining({ kind: 'error', code: 'line-too-long' })]);
    expect(decoder.failed).toBe(true);
    expect(decoder.push(Buffer.from('\n\n'))).toEqual([]);
  });

  test('too many attributes', () => {
    const decoder = createPolicyDecoder({ ...DEFAULT_POLICY_LIMITS, maxAttributes: 3 });
    const results = decoder.push(Buffer.from('a=1\nb=2\nc=3\nd=4\n\n'));
    expect(results).toEqual([expect.objectContaining({ kind: 'error', code: 'too-many-attributes' })]);
  });

  test('request larger than maxRequestBytes', () => {
    const decoder = createPolicyDecoder({ maxLineBytes: 100, maxAttributes: 1000, maxRequestBytes: 200 });
    const lines = Array.from({ length: 20 }, (_, i) => `attr${i}=${'x'.repeat(20)}\n`).join('');
    const results = decoder.push(Buffer.from(lines));
    expect(results).toEqual([expect.objectContaining({ kind: 'error', code: 'request-too-large' })]);
  });

  test('limits reset between requests', () => {
    const decoder = createPolicyDecoder({ maxLineBytes: 100, maxAttributes: 2, maxRequestBytes: 40 });
    const one = 'a=1234567890\nb=1234567890\n\n';
    const results = decoder.push(Buffer.from(one + one + one));
    expect(results.map((r) => r.kind)).toEqual(['request', 'request', 'request']);
    expect(decoder.pendingBytes).toBe(0);
  });
});

describe('decoded request shape', () => {
  test('every known name is present, undefined unless sent; a request in Postfix order re-encodes byte for byte', () => {
    const wire = Buffer.from('request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address=192.0.2.1\nsender=\nrecipient=a@example.org\nx_extension=1\n\n');
    const [result] = decodeAll(wire);
    if (result?.kind !== 'request') throw new Error('expected a request');
    expect(result.request.client_address).toBe('192.0.2.1');
    expect(result.request.sender).toBe('');
    expect(result.request.helo_name).toBeUndefined();
    expect('helo_name' in result.request).toBe(true);
    expect({ ...result.request.unknown }).toEqual({ x_extension: '1' });
    expect(encodePolicyRequest(result.request).equals(wire)).toBe(true);
  });

  test('each known attribute lands under its own name, in Postfix order, out of order and repeated', () => {
    const names = [...POLICY_ATTRIBUTE_NAMES];
    for (const order of [names, [...names].reverse()]) {
      const wire = Buffer.from(order.map((name) => `${name}=value of ${name}\n`).join('') + 'request=again\n\n');
      const [result] = decodeAll(wire);
      if (result?.kind !== 'request') throw new Error('expected a request');
      const expected = Object.fromEntries(names.map((name) => [name, `value of ${name}`]));
      expected.request = 'again';
      expect(plain(result.request)).toEqual({ ...expected, unknown: {} });
    }
  });

  test('a known name without its "=" right after it is not taken for that name', () => {
    const [result] = decodeAll(Buffer.from('request=smtpd_access_policy\nprotocol_statex=1\nprotocol_state=RCPT\n\n'));
    if (result?.kind !== 'request') throw new Error('expected a request');
    expect(result.request.protocol_state).toBe('RCPT');
    expect({ ...result.request.unknown }).toEqual({ protocol_statex: '1' });
  });

  test('a peer cannot reach the prototype or shadow the unknown bag', () => {
    const [result] = decodeAll(Buffer.from('__proto__=x\nunknown=y\nconstructor=z\n\n'));
    if (result?.kind !== 'request') throw new Error('expected a request');
    expect(Object.entries(result.request.unknown)).toEqual([
      ['__proto__', 'x'],
      ['unknown', 'y'],
      ['constructor', 'z'],
    ]);
    expect(Object.getPrototypeOf(result.request)).toBe(Object.prototype);
    expect(typeof result.request.unknown).toBe('object');
  });
});

const attributeName = fc.stringMatching(/^[a-z_]{1,20}$/);
const attributeValue = fc.string({ maxLength: 200 }).filter((s) => !/[\n\0]/.test(s));

/** The attributes a decoded request says the peer sent: the known ones that are not undefined, and the unknown ones. */
function sent(request: PolicyRequest): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(request)) if (name !== 'unknown' && typeof value === 'string') out[name] = value;
  return { ...out, ...request.unknown };
}

describe('policy codec properties', () => {
  test('round trip: decode(encode(attributes)) gives the attributes back, whatever the split', () => {
    fc.assert(
      fc.property(
        fc.dictionary(attributeName, attributeValue, { minKeys: 1, maxKeys: 40 }),
        fc.array(fc.nat(), { maxLength: 8 }),
        (attributes, rawCuts) => {
          const wire = encodePolicyAttributes(attributes);
          const cuts = [...new Set(rawCuts.map((c) => c % wire.length))].sort((a, b) => a - b);
          const results = decodeAll(wire, cuts);
          expect(results).toHaveLength(1);
          const first = results[0];
          if (first?.kind !== 'request') throw new Error('expected a request');
          expect(sent(first.request)).toEqual(attributes);
          // Re-encoded (known names in Postfix's order, then the unknown ones), it decodes to the same attributes.
          const again = decodeAll(encodePolicyRequest(first.request), []);
          expect(again).toHaveLength(1);
          if (again[0]?.kind !== 'request') throw new Error('expected a request');
          expect(sent(again[0].request)).toEqual(attributes);
        },
      ),
      { numRuns: 300 },
    );
  });

  test('the decoder never throws on random bytes, and never emits more requests than empty lines', () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 300 }), { maxLength: 10 }), (chunks) => {
        const decoder = createPolicyDecoder({ maxLineBytes: 256, maxAttributes: 16, maxRequestBytes: 1024 });
        let requests = 0;
        let errors = 0;
        let newlines = 0;
        for (const chunk of chunks) {
          for (const byte of chunk) if (byte === 0x0a) newlines++;
          for (const r of decoder.push(chunk)) r.kind === 'request' ? requests++ : errors++;
        }
        expect(errors).toBeLessThanOrEqual(1);
        expect(requests).toBeLessThanOrEqual(newlines);
        expect(decoder.pendingBytes).toBeLessThanOrEqual(1024 + 256);
      }),
      { numRuns: 500 },
    );
  });

  test('the decoder never reads past a request: trailing bytes of the next one stay pending', () => {
    fc.assert(
      fc.property(fc.dictionary(attributeName, attributeValue, { minKeys: 1, maxKeys: 10 }), attributeName, (attributes, partialName) => {
        const decoder = createPolicyDecoder();
        const wire = Buffer.concat([encodePolicyAttributes(attributes), Buffer.from(`${partialName}=part`)]);
        const results = decoder.push(wire);
        expect(results.map((r) => r.kind)).toEqual(['request']);
        const first = results[0];
        if (first?.kind !== 'request') throw new Error('expected a request');
        expect(Object.keys(sent(first.request)).sort()).toEqual(Object.keys(attributes).sort());
        expect(decoder.pendingBytes).toBe(partialName.length + 5);
      }),
      { numRuns: 200 },
    );
  });
});

describe('encodePolicyAttributes', () => {
  test('refuses values that would break framing', () => {
    expect(() => encodePolicyAttributes({ sender: 'a\nb' })).toThrow(RangeError);
    expect(() => encodePolicyAttributes({ 'a=b': 'x' })).toThrow(RangeError);
    expect(() => encodePolicyAttributes({ sender: 'a\0' })).toThrow(RangeError);
  });
  test('omits undefined, stringifies numbers, ends with an empty line', () => {
    expect(encodePolicyAttributes({ a: 'x', b: undefined, c: 3 }).toString()).toBe('a=x\nc=3\n\n');
  });
});
