import { describe, expect, it } from "vitest";
import { encodeJpeg } from "../../emulator/jpeg";

interface Segment {
  marker: number;
  body: Buffer;
}

interface Parsed {
  segments: Segment[];
  /** The entropy-coded data after SOS, up to the next marker. */
  scan: Buffer;
}

/** Walks the marker segments by their lengths (T.81 B.1.1.4), then the scan up to EOI. */
function parse(jpeg: Buffer): Parsed {
  expect(jpeg.subarray(0, 2)).toEqual(Buffer.from([0xff, 0xd8])); // SOI
  const segments: Segment[] = [];
  let at = 2;
  for (;;) {
    expect(jpeg[at]).toBe(0xff);
    const marker = jpeg[at + 1] ?? 0;
    const length = jpeg.readUInt16BE(at + 2);
    expect(length).toBeGreaterThanOrEqual(2);
    expect(at + 2 + length).toBeLessThanOrEqual(jpeg.length);
    segments.push({ marker, body: jpeg.subarray(at + 4, at + 2 + length) });
    at += 2 + length;
    if (marker === 0xda) break; // SOS: entropy-coded data follows
  }
  // The scan ends at the first 0xFF that is neither stuffing (FF 00) nor a restart marker (FF D0-D7).
  let end = at;
  while (end < jpeg.length - 1) {
    const next = jpeg[end + 1] ?? 0;
    if (jpeg[end] === 0xff && next !== 0x00 && (next < 0xd0 || next > 0xd7)) break;
    end++;
  }
  expect(jpeg.subarray(end)).toEqual(Buffer.from([0xff, 0xd9])); // EOI, and nothing after it
  return { segments, scan: jpeg.subarray(at, end) };
}

function only(parsed: Parsed, marker: number): Buffer {
  const found = parsed.segments.filter((s) => s.marker === marker);
  expect(found).toHaveLength(1);
  return found[0]?.body ?? Buffer.alloc(0);
}

/** Canonical Huffman codes (T.81 C.2) of each DHT table, keyed by class << 4 | id: (length << 16 | code) -> symbol. */
function huffmanTables(dht: Buffer): Map<number, Map<number, number>> {
  const tables = new Map<number, Map<number, number>>();
  let at = 0;
  while (at < dht.length) {
    const codes = new Map<number, number>();
    let code = 0;
    let symbol = at + 17;
    for (let length = 1; length <= 16; length++) {
      for (let n = 0; n < (dht[at + length] ?? 0); n++) codes.set((length << 16) | code++, dht[symbol++] ?? 0);
      code <<= 1;
    }
    tables.set(dht[at] ?? 0, codes);
    at = symbol;
  }
  return tables;
}

/**
 * An independent Huffman decoder for the scan (F.2.2): returns every block's quantised
 * coefficients in zig-zag order (DC differences summed back up), per component, and checks that
 * the data ends exactly after the last block with only 1-bits of padding.
 */
function decodeScan(jpeg: Buffer): number[][][] {
  const parsed = parse(jpeg);
  const sof = only(parsed, 0xc0);
  const tables = huffmanTables(only(parsed, 0xc4));
  const bytes: number[] = [];
  for (let i = 0; i < parsed.scan.length; i++) {
    bytes.push(parsed.scan[i] ?? 0);
    if (parsed.scan[i] === 0xff) i++; // skip the stuffed 0x00
  }
  let bit = 0;
  const read = (n: number) => {
    let value = 0;
    for (let i = 0; i < n; i++, bit++) {
      if (bit >= bytes.length * 8) throw new Error("scan ended inside a block");
      value = (value << 1) | (((bytes[bit >> 3] ?? 0) >> (7 - (bit & 7))) & 1);
    }
    return value;
  };
  const decode = (table: number) => {
    const codes = tables.get(table);
    let code = 0;
    for (let length = 1; length <= 16; length++) {
      code = (code << 1) | read(1);
      const symbol = codes?.get((length << 16) | code);
      if (symbol !== undefined) return symbol;
    }
    throw new Error(`no Huffman code at bit ${bit}`);
  };
  // F.2.2.1: SSSS bits, where a leading 0 means a negative value.
  const extend = (size: number) => {
    const v = read(size);
    return size > 0 && v < 1 << (size - 1) ? v - (1 << size) + 1 : v;
  };

  const mcus = Math.ceil(sof.readUInt16BE(1) / 8) * Math.ceil(sof.readUInt16BE(3) / 8);
  const blocks: number[][][] = [[], [], []];
  const dc = [0, 0, 0];
  for (let m = 0; m < mcus; m++) {
    for (let c = 0; c < 3; c++) {
      const id = c === 0 ? 0 : 1;
      const zz = Array<number>(64).fill(0);
      dc[c] = (dc[c] ?? 0) + extend(decode(id));
      zz[0] = dc[c] ?? 0;
      for (let k = 1; k < 64; k++) {
        const symbol = decode(0x10 | id);
        if (symbol === 0x00) break; // EOB
        k += symbol >> 4;
        if (k > 63) throw new Error("run past the end of the block");
        zz[k] = extend(symbol & 15);
      }
      blocks[c]?.push(zz);
    }
  }
  const rest = bytes.length * 8 - bit;
  expect(rest).toBeLessThan(8);
  expect(read(rest)).toBe((1 << rest) - 1);
  return blocks;
}

function gradient(width: number, height: number): Uint8Array {
  const rgb = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const at = 3 * (y * width + x);
      rgb[at] = (x * 255) / Math.max(1, width - 1);
      rgb[at + 1] = (y * 255) / Math.max(1, height - 1);
      rgb[at + 2] = ((x + y) * 7) & 0xff;
    }
  }
  return rgb;
}

function noise(width: number, height: number): Uint8Array {
  const rgb = new Uint8Array(width * height * 3);
  let state = 1;
  for (let i = 0; i < rgb.length; i++) {
    state = (Math.imul(state, 1103515245) + 12345) >>> 0;
    rgb[i] = state >>> 24;
  }
  return rgb;
}

const solid = (width: number, height: number, value: number) => new Uint8Array(width * height * 3).fill(value);

/** Table K.1 in natural order; quality 50 must write it unscaled. */
const K1 = [
  16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51,
  87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92, 49, 64, 78, 87, 103, 121, 120, 101,
  72, 92, 95, 98, 112, 100, 103, 99,
];

/** Zig-zag order (T.81 Figure A.6) derived independently: walk the anti-diagonals, alternating direction. */
function zigzag(): number[] {
  const order: number[] = [];
  for (let sum = 0; sum < 15; sum++) {
    const cells: number[] = [];
    for (let row = 0; row < 8; row++) {
      const col = sum - row;
      if (col >= 0 && col < 8) cells.push(row * 8 + col);
    }
    order.push(...(sum % 2 === 0 ? cells.reverse() : cells));
  }
  return order;
}

describe("encodeJpeg", () => {
  it("starts with SOI and JFIF APP0 and ends with EOI", () => {
    const jpeg = encodeJpeg(16, 16, gradient(16, 16));
    const parsed = parse(jpeg);
    expect(parsed.segments[0]?.marker).toBe(0xe0);
    expect(parsed.segments[0]?.body.subarray(0, 5).toString("latin1")).toBe("JFIF\0");
  });

  it("writes a baseline SOF0 with the size and three 1x1-sampled components", () => {
    const parsed = parse(encodeJpeg(1000, 600, gradient(1000, 600)));
    expect(parsed.segments.some((s) => s.marker >= 0xc1 && s.marker <= 0xcf && s.marker !== 0xc4)).toBe(false);
    const sof = only(parsed, 0xc0);
    expect(sof.length).toBe(6 + 3 * 3);
    expect(sof[0]).toBe(8); // sample precision
    expect(sof.readUInt16BE(1)).toBe(600);
    expect(sof.readUInt16BE(3)).toBe(1000);
    expect(sof[5]).toBe(3);
    // (id, sampling H<<4|V, quantisation table): Y uses table 0, Cb and Cr table 1.
    expect([...sof.subarray(6)]).toEqual([1, 0x11, 0, 2, 0x11, 1, 3, 0x11, 1]);
  });

  it("writes two 8-bit quantisation tables scaled like libjpeg", () => {
    const tables = (quality: number) => only(parse(encodeJpeg(8, 8, gradient(8, 8), quality)), 0xdb);
    const q50 = tables(50);
    expect(q50.length).toBe(2 * 65);
    expect(q50[0]).toBe(0x00); // 8-bit precision, table 0
    expect(q50[65]).toBe(0x01); // table 1
    expect([...q50.subarray(1, 65)]).toEqual(zigzag().map((i) => K1[i]));
    expect([...tables(100).subarray(1, 65)]).toEqual(Array<number>(64).fill(1));
    // Quality 90 scales by 0.2 with rounding: 16 -> 3, 11 -> 2, 99 -> 20.
    const q90 = tables(90);
    expect([q90[1], q90[2], q90[64]]).toEqual([3, 2, 20]);
    // Quality 1 scales by 50, clamped to 255 for baseline.
    expect(Math.max(...tables(1))).toBe(255);
  });

  it("writes the four Annex K Huffman tables, each consistent with its code counts", () => {
    const dht = only(parse(encodeJpeg(8, 8, gradient(8, 8))), 0xc4);
    const seen: number[] = [];
    let at = 0;
    while (at < dht.length) {
      const classAndId = dht[at] ?? 0;
      const counts = [...dht.subarray(at + 1, at + 17)];
      const total = counts.reduce((a, b) => a + b, 0);
      const symbols = [...dht.subarray(at + 17, at + 17 + total)];
      expect(symbols).toHaveLength(total);
      if (classAndId >> 4 === 0) {
        expect(symbols).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
      } else {
        // Every (run, size) pair of F.1.2.2 plus EOB and ZRL: 162 distinct symbols.
        expect(new Set(symbols).size).toBe(162);
        expect(symbols).toContain(0x00);
        expect(symbols).toContain(0xf0);
      }
      seen.push(classAndId);
      at += 17 + total;
    }
    expect(at).toBe(dht.length);
    expect(seen).toEqual([0x00, 0x10, 0x01, 0x11]);
    // First entries of Table K.3 (DC luminance) and K.5 (AC luminance).
    expect([...dht.subarray(1, 17)]).toEqual([0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0]);
    expect([...dht.subarray(29 + 1, 29 + 17)]).toEqual([0, 2, 1, 3, 3, 2, 4, 3, 5, 5, 4, 4, 0, 0, 1, 0x7d]);
  });

  it("writes one interleaved baseline scan over the three components", () => {
    const sos = only(parse(encodeJpeg(8, 8, gradient(8, 8))), 0xda);
    expect([...sos]).toEqual([3, 1, 0x00, 2, 0x11, 3, 0x11, 0, 63, 0]);
  });

  it("codes a flat mid-grey block as DC 0 + EOB per component, padded with 1-bits", () => {
    // Y: DC "00" (K.3), EOB "1010" (K.5); Cb, Cr: DC "00" (K.4), EOB "00" (K.6).
    // 00 1010 00 00 00 00 + "11" padding = 0010 1000 0000 0011.
    expect([...parse(encodeJpeg(8, 8, solid(8, 8, 128))).scan]).toEqual([0x28, 0x03]);
    // Four such blocks: each DC difference is 0 too, so the same 14 bits four times.
    const scan = parse(encodeJpeg(16, 16, solid(16, 16, 128))).scan;
    expect(scan.toString("hex")).toBe("2800a002800a00"); // 56 bits: 4 x 14, no padding needed
  });

  it("stuffs every 0xFF in the scan with a 0x00", () => {
    const { scan } = parse(encodeJpeg(64, 64, noise(64, 64), 100));
    let stuffed = 0;
    for (let i = 0; i < scan.length; i++) {
      if (scan[i] !== 0xff) continue;
      expect(scan[i + 1]).toBe(0x00);
      stuffed++;
    }
    expect(stuffed).toBeGreaterThan(10); // noise at quality 100 yields plenty of 0xFF bytes
  });

  it("gives different bytes for different images and the same bytes for the same one", () => {
    const a = encodeJpeg(32, 32, gradient(32, 32));
    const b = encodeJpeg(32, 32, noise(32, 32));
    const c = encodeJpeg(32, 32, solid(32, 32, 40));
    expect(a.equals(b)).toBe(false);
    expect(a.equals(c)).toBe(false);
    expect(b.equals(c)).toBe(false);
    expect(encodeJpeg(32, 32, gradient(32, 32)).equals(a)).toBe(true);
    expect(encodeJpeg(32, 32, gradient(32, 32), 50).equals(a)).toBe(false);
  });

  it.each([
    [1, 1],
    [17, 9],
    [8, 8],
    [256, 256],
    [1000, 600],
  ])("encodes %ix%i", (width, height) => {
    const parsed = parse(encodeJpeg(width, height, gradient(width, height)));
    const sof = only(parsed, 0xc0);
    expect([sof.readUInt16BE(1), sof.readUInt16BE(3)]).toEqual([height, width]);
    expect(parsed.scan.length).toBeGreaterThan(0);
  });

  it("repeats edge pixels into the padding of partial blocks", () => {
    // A 5x3 image codes like the 8x8 one made by copying its last column and row outwards.
    const small = gradient(5, 3);
    const padded = new Uint8Array(8 * 8 * 3);
    for (let y = 0; y < 8; y++) {
      for (let x = 0; x < 8; x++) {
        const from = 3 * (Math.min(y, 2) * 5 + Math.min(x, 4));
        padded.set(small.subarray(from, from + 3), 3 * (y * 8 + x));
      }
    }
    expect(parse(encodeJpeg(5, 3, small)).scan).toEqual(parse(encodeJpeg(8, 8, padded)).scan);
  });

  it.each([
    [1, 1, 90],
    [17, 9, 90],
    [32, 32, 100],
    [256, 256, 1],
  ])("codes a scan that decodes to exactly one block per 8x8 per component (%ix%i, quality %i)", (w, h, q) => {
    const blocks = decodeScan(encodeJpeg(w, h, w === 32 ? noise(w, h) : gradient(w, h), q));
    for (const component of blocks) expect(component).toHaveLength(Math.ceil(w / 8) * Math.ceil(h / 8));
  });

  it("computes the DCT with the scaling of A.3.3", () => {
    // Flat colour at quality 100 (all divisors 1): DC = 8 * (level - 128), every AC 0.
    // (200, 30, 90) is Y 87.67, Cb 129.32, Cr 208.12 (JFIF).
    const flat = new Uint8Array(8 * 8 * 3);
    for (let i = 0; i < 64; i++) flat.set([200, 30, 90], 3 * i);
    const [y, cb, cr] = decodeScan(encodeJpeg(8, 8, flat, 100)).map((c) => c[0] ?? []);
    expect([y?.[0], cb?.[0], cr?.[0]]).toEqual([-323, 11, 641]);
    expect([y, cb, cr].flatMap((b) => b?.slice(1) ?? []).every((v) => v === 0)).toBe(true);

    // A grey horizontal cosine of amplitude 50 is the basis function of F(0,1) alone:
    // F(0,1) = 1/4 * C(0) * C(1) * 8 * (50 * 4) = 200√2 ≈ 282.8; 284.2 for the pixels rounded to integers.
    const wave = new Uint8Array(8 * 8 * 3);
    const level = (x: number) => Math.round(128 + 50 * Math.cos(((2 * x + 1) * Math.PI) / 16));
    for (let i = 0; i < 64; i++) wave.fill(level(i & 7), 3 * i, 3 * i + 3);
    const luma = decodeScan(encodeJpeg(8, 8, wave, 100))[0]?.[0] ?? [];
    expect(luma[1]).toBe(284);
    expect(luma.filter((v, k) => k !== 1 && Math.abs(v) > 1)).toEqual([]);
  });

  it("codes each DC as the difference from the previous block of its component", () => {
    // Three flat grey blocks side by side; at quality 100 each DC is 8 * (level - 128).
    const rgb = new Uint8Array(24 * 8 * 3);
    for (let i = 0; i < 24 * 8; i++) rgb.fill([100, 228, 28][Math.floor((i % 24) / 8)] ?? 0, 3 * i, 3 * i + 3);
    const [luma] = decodeScan(encodeJpeg(24, 8, rgb, 100));
    expect(luma?.map((block) => block[0])).toEqual([-224, 800, -800]);
  });

  it("codes runs of more than 15 zeros with ZRL", () => {
    // A grey cosine of the highest frequency both ways is F(7,7) alone: 1/4 * 100 * 4 * 4 = 400,
    // 4 after quality 50's divisor of 99, preceded by 62 zeros in zig-zag order.
    const wave = new Uint8Array(8 * 8 * 3);
    const basis = (n: number) => Math.cos(((2 * n + 1) * 7 * Math.PI) / 16);
    for (let i = 0; i < 64; i++) wave.fill(Math.round(128 + 100 * basis(i & 7) * basis(i >> 3)), 3 * i, 3 * i + 3);
    const luma = decodeScan(encodeJpeg(8, 8, wave, 50))[0]?.[0] ?? [];
    expect(luma[63]).toBe(4);
    expect(luma.slice(1, 63).every((v) => v === 0)).toBe(true);
  });

  it("rejects a buffer of the wrong size, bad dimensions and bad quality", () => {
    expect(() => encodeJpeg(2, 2, new Uint8Array(11))).toThrow(RangeError);
    expect(() => encodeJpeg(0, 1, new Uint8Array(0))).toThrow(RangeError);
    expect(() => encodeJpeg(65536, 1, new Uint8Array(65536 * 3))).toThrow(RangeError);
    expect(() => encodeJpeg(1, 1, new Uint8Array(3), 0)).toThrow(RangeError);
    expect(() => encodeJpeg(1, 1, new Uint8Array(3), 101)).toThrow(RangeError);
    expect(() => encodeJpeg(1, 1, new Uint8Array(3), 90.5)).toThrow(RangeError);
  });
});
