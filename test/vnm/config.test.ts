import { expect } from 'chai';
import { density, formatVnm, packedShape, parseVnm, VnmConfigError } from '../../compiler/vnm/config.js';

describe('vnm/config', () => {
  it('parses V:N:M settings', () => {
    expect(parseVnm('64:2:8')).to.deep.equal({ v: 64, n: 2, m: 8 });
    expect(parseVnm(' 16:2:5 ')).to.deep.equal({ v: 16, n: 2, m: 5 });
    expect(parseVnm('256:2:32')).to.deep.equal({ v: 256, n: 2, m: 32 });
    expect(parseVnm('8:2:4')).to.deep.equal({ v: 8, n: 2, m: 4 });
    expect(formatVnm(parseVnm('128:2:6'))).to.equal('128:2:6');
  });

  it('rejects bad settings with a message saying what is allowed', () => {
    const cases: Array<[string, RegExp]> = [
      ['12:2:8', /^V must be one of 8, 16, 32, 64, 128, 256 \(got 12\)\.$/],
      ['64:3:8', /^N must be 2.*\(got 3\)\.$/],
      ['64:2:3', /^M must be an integer from 4 to 32 \(got 3\)\.$/],
      ['64:2:33', /^M must be an integer from 4 to 32 \(got 33\)\.$/],
      ['64:2:8.5', /three integers separated by colons.*\(got "64:2:8.5"\)/],
      ['64:2', /three integers separated by colons/],
      ['', /three integers separated by colons/],
      ['a:b:c', /three integers separated by colons/],
      ['-64:2:8', /three integers separated by colons/],
    ];
    for (const [text, message] of cases) {
      let error: unknown;
      try {
        parseVnm(text);
      } catch (e) {
        error = e;
      }
      expect(error, text).to.be.instanceOf(VnmConfigError);
      expect(error).to.be.instanceOf(Error);
      expect((error as Error).message, text).to.match(message);
      expect((error as Error).name).to.equal('VnmConfigError');
    }
  });

  it('computes packed shapes, padding to whole blocks and groups', () => {
    const cfg = parseVnm('64:2:8');
    expect(packedShape(4096, 4096, cfg)).to.deep.equal({ R: 4096, G: 512, blocks: 64, metaBytesPerRow: 256 });
    expect(packedShape(100, 30, cfg)).to.deep.equal({ R: 128, G: 4, blocks: 2, metaBytesPerRow: 2 });
    expect(packedShape(1, 3, parseVnm('16:2:5'))).to.deep.equal({ R: 16, G: 1, blocks: 1, metaBytesPerRow: 1 });
    expect(packedShape(16, 27, parseVnm('16:2:9'))).to.deep.equal({ R: 16, G: 3, blocks: 1, metaBytesPerRow: 2 });
    expect(packedShape(0, 0, cfg)).to.deep.equal({ R: 0, G: 0, blocks: 0, metaBytesPerRow: 0 });
    expect(() => packedShape(-1, 4, cfg)).to.throw(RangeError);
  });

  it('gives density 2/M', () => {
    expect(density(parseVnm('64:2:8'))).to.equal(0.25);
    expect(density(parseVnm('64:2:5'))).to.equal(0.4);
    expect(density(parseVnm('8:2:4'))).to.equal(0.5);
  });
});
