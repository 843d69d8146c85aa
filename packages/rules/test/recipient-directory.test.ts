import { classifyRecipient, parseRecipientDirectory, type RecipientDirectory } from '../src/recipient-directory.js';

const LIST = `
# our domains
@example.org
@example.net *        # catch-all
!old@example.net
alice@example.org
Bob@Example.ORG
postmaster@other.example   # listing an address makes its domain ours
`;

function directory(text: string): RecipientDirectory {
  const r = parseRecipientDirectory(text);
  if (!r.ok) throw new Error(JSON.stringify(r.issues));
  return r.directory;
}

describe('recipient directory', () => {
  const d = directory(LIST);
  test.each([
    ['alice@example.org', 'known'],
    ['ALICE@example.org', 'known'],
    ['bob@example.org', 'known'],
    ['carol@example.org', 'unknown'],
    ['anyone@example.net', 'known'],
    ['old@example.net', 'unknown'],
    ['postmaster@other.example', 'known'],
    ['root@other.example', 'unknown'],
    ['someone@elsewhere.example', 'foreign'],
    ['no-at-sign', 'foreign'],
    ['', 'foreign'],
  ])('%j is %s', (address, status) => {
    expect(classifyRecipient(d, address)).toBe(status);
  });

  test('every bad line is reported with its number', () => {
    const r = parseRecipientDirectory('@good.example\n@bad domain\nnot-an-address\n@x.example maybe\na@b.example c@d.example\n');
    expect(r).toEqual({
      ok: false,
      issues: [
        { line: 2, message: 'after "@bad" only "*" (catch-all) may follow' },
        { line: 3, message: '"not-an-address" is not an address, @domain or !address' },
        { line: 4, message: 'after "@x.example" only "*" (catch-all) may follow' },
        { line: 5, message: 'one address per line, got "a@b.example c@d.example"' },
      ],
    });
  });

  test('an empty file covers no domain', () => {
    expect(classifyRecipient(directory('# nothing\n'), 'a@example.org')).toBe('foreign');
  });
});
