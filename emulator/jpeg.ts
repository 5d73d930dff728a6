/**
 * A small baseline JPEG encoder (ITU T.81 sequential DCT, Huffman coded, 8-bit) with a JFIF
 * header, so the emulator can answer `data:image/jpeg;base64,...` as the real GPU server does.
 * Colour is YCbCr with 4:4:4 sampling; the tables are the example ones of Annex K, which is
 * what libjpeg writes unless asked to optimise them.
 */

/** Table K.1, luminance quantisation, in natural (row-major) order. */
const LUMA_QUANT = [
  16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51,
  87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92, 49, 64, 78, 87, 103, 121, 120, 101,
  72, 92, 95, 98, 112, 100, 103, 99,
];

/** Table K.2, chrominance quantisation, in natural order. */
const CHROMA_QUANT = [
  17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99, 24, 26, 56, 99, 99, 99, 99, 99, 47, 66, 99, 99, 99,
  99, 99, 99, ...Array<number>(32).fill(99),
];

/** Figure A.6: ZIGZAG[k] is the natural index of the k-th coefficient in zig-zag order. */
const ZIGZAG = Uint8Array.from([
  0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6, 7, 14, 21,
  28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61, 54,
  47, 55, 62, 63,
]);

/** A Huffman table as DHT carries it (B.2.4.2): how many codes of each length 1..16, then the symbols. */
interface HuffmanSpec {
  readonly tableClass: 0 | 1; // 0 = DC, 1 = AC
  readonly id: 0 | 1; // 0 = luminance, 1 = chrominance
  readonly bits: readonly number[];
  readonly values: readonly number[];
}

/** Tables K.3 and K.4: DC differences are coded by magnitude category 0..11 (F.1.2.1). */
const DC_LUMA: HuffmanSpec = {
  tableClass: 0,
  id: 0,
  bits: [0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0],
  values: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11],
};
const DC_CHROMA: HuffmanSpec = {
  tableClass: 0,
  id: 1,
  bits: [0, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0],
  values: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11],
};

/** Table K.5: AC symbols are (zero run << 4) | magnitude category (F.1.2.2). */
const AC_LUMA: HuffmanSpec = {
  tableClass: 1,
  id: 0,
  bits: [0, 2, 1, 3, 3, 2, 4, 3, 5, 5, 4, 4, 0, 0, 1, 0x7d],
  values: [
    0x01, 0x02, 0x03, 0x00, 0x04, 0x11, 0x05, 0x12, 0x21, 0x31, 0x41, 0x06, 0x13, 0x51, 0x61, 0x07, 0x22, 0x71, 0x14,
    0x32, 0x81, 0x91, 0xa1, 0x08, 0x23, 0x42, 0xb1, 0xc1, 0x15, 0x52, 0xd1, 0xf0, 0x24, 0x33, 0x62, 0x72, 0x82, 0x09,
    0x0a, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x25, 0x26, 0x27, 0x28, 0x29, 0x2a, 0x34, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3a,
    0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49, 0x4a, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5a, 0x63, 0x64, 0x65,
    0x66, 0x67, 0x68, 0x69, 0x6a, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7a, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88,
    0x89, 0x8a, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9a, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9,
    0xaa, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6, 0xb7, 0xb8, 0xb9, 0xba, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xc7, 0xc8, 0xc9, 0xca,
    0xd2, 0xd3, 0xd4, 0xd5, 0xd6, 0xd7, 0xd8, 0xd9, 0xda, 0xe1, 0xe2, 0xe3, 0xe4, 0xe5, 0xe6, 0xe7, 0xe8, 0xe9, 0xea,
    0xf1, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7, 0xf8, 0xf9, 0xfa,
  ],
};

/** Table K.6. */
const AC_CHROMA: HuffmanSpec = {
  tableClass: 1,
  id: 1,
  bits: [0, 2, 1, 2, 4, 4, 3, 4, 7, 5, 4, 4, 0, 1, 2, 0x77],
  values: [
    0x00, 0x01, 0x02, 0x03, 0x11, 0x04, 0x05, 0x21, 0x31, 0x06, 0x12, 0x41, 0x51, 0x07, 0x61, 0x71, 0x13, 0x22, 0x32,
    0x81, 0x08, 0x14, 0x42, 0x91, 0xa1, 0xb1, 0xc1, 0x09, 0x23, 0x33, 0x52, 0xf0, 0x15, 0x62, 0x72, 0xd1, 0x0a, 0x16,
    0x24, 0x34, 0xe1, 0x25, 0xf1, 0x17, 0x18, 0x19, 0x1a, 0x26, 0x27, 0x28, 0x29, 0x2a, 0x35, 0x36, 0x37, 0x38, 0x39,
    0x3a, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49, 0x4a, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5a, 0x63, 0x64,
    0x65, 0x66, 0x67, 0x68, 0x69, 0x6a, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7a, 0x82, 0x83, 0x84, 0x85, 0x86,
    0x87, 0x88, 0x89, 0x8a, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9a, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7,
    0xa8, 0xa9, 0xaa, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6, 0xb7, 0xb8, 0xb9, 0xba, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xc7, 0xc8,
    0xc9, 0xca, 0xd2, 0xd3, 0xd4, 0xd5, 0xd6, 0xd7, 0xd8, 0xd9, 0xda, 0xe2, 0xe3, 0xe4, 0xe5, 0xe6, 0xe7, 0xe8, 0xe9,
    0xea, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7, 0xf8, 0xf9, 0xfa,
  ],
};

const EOB = 0x00; // end of block: the rest of the block is zero (F.1.2.2.1)
const ZRL = 0xf0; // a run of 16 zeros

/** Code and length per symbol, indexed by the symbol. */
interface HuffmanCodes {
  readonly code: Uint16Array;
  readonly size: Uint8Array;
}

/** Canonical codes from a spec: consecutive codes within a length, doubled at each new length (C.2). */
function huffmanCodes(spec: HuffmanSpec): HuffmanCodes {
  const code = new Uint16Array(256);
  const size = new Uint8Array(256);
  let next = 0;
  let k = 0;
  spec.bits.forEach((count, i) => {
    for (let j = 0; j < count; j++) {
      const symbol = spec.values[k++] ?? 0;
      code[symbol] = next++;
      size[symbol] = i + 1;
    }
    next <<= 1;
  });
  return { code, size };
}

const DC_LUMA_CODES = huffmanCodes(DC_LUMA);
const DC_CHROMA_CODES = huffmanCodes(DC_CHROMA);
const AC_LUMA_CODES = huffmanCodes(AC_LUMA);
const AC_CHROMA_CODES = huffmanCodes(AC_CHROMA);

/**
 * Scales a base table as libjpeg's jpeg_set_quality does (quality 50 = the table as printed),
 * clamped to 1..255 so it fits the 8-bit precision of baseline DQT (B.2.4.1). Zig-zag order.
 */
function scaledQuant(base: readonly number[], quality: number): Uint8Array {
  const scale = quality < 50 ? Math.floor(5000 / quality) : 200 - 2 * quality;
  return ZIGZAG.map((i) => Math.min(255, Math.max(1, Math.floor(((base[i] ?? 0) * scale + 50) / 100))));
}

/**
 * One 8-point pass of the Arai-Agui-Nakajima fast DCT (the float one of libjpeg's jfdctflt.c), in
 * place on data[start], data[start + stride], ... It needs 5 multiplications instead of 64 because
 * each output k comes out multiplied by AAN_SCALE[k] (and the 2-D result by 8 overall), which the
 * quantiser divides out for free (see `quantMultipliers`).
 */
function fdct8(data: Float64Array, start: number, stride: number): void {
  const d0 = data[start] ?? 0;
  const d1 = data[start + stride] ?? 0;
  const d2 = data[start + 2 * stride] ?? 0;
  const d3 = data[start + 3 * stride] ?? 0;
  const d4 = data[start + 4 * stride] ?? 0;
  const d5 = data[start + 5 * stride] ?? 0;
  const d6 = data[start + 6 * stride] ?? 0;
  const d7 = data[start + 7 * stride] ?? 0;

  // Even part: outputs 0, 2, 4, 6 from the sums of mirrored inputs.
  const s07 = d0 + d7;
  const s16 = d1 + d6;
  const s25 = d2 + d5;
  const s34 = d3 + d4;
  const e0 = s07 + s34;
  const e1 = s16 + s25;
  const e2 = s16 - s25;
  const e3 = s07 - s34;
  data[start] = e0 + e1;
  data[start + 4 * stride] = e0 - e1;
  const z1 = (e2 + e3) * Math.SQRT1_2;
  data[start + 2 * stride] = e3 + z1;
  data[start + 6 * stride] = e3 - z1;

  // Odd part: outputs 1, 3, 5, 7 from the differences, through a rotation by 3π/8.
  const t4 = d3 - d4;
  const t5 = d2 - d5;
  const t6 = d1 - d6;
  const t7 = d0 - d7;
  const o0 = t4 + t5;
  const o1 = t5 + t6;
  const o2 = t6 + t7;
  const z5 = (o0 - o2) * 0.382683433; // cos(3π/8)
  const z2 = 0.5411961 * o0 + z5; // cos(3π/8) * √2
  const z4 = 1.306562965 * o2 + z5; // cos(π/8) * √2
  const z3 = o1 * Math.SQRT1_2;
  const z11 = t7 + z3;
  const z13 = t7 - z3;
  data[start + 5 * stride] = z13 + z2;
  data[start + 3 * stride] = z13 - z2;
  data[start + stride] = z11 + z4;
  data[start + 7 * stride] = z11 - z4;
}

/** 2-D forward DCT of an 8x8 block in place (A.3.3), as rows then columns, scaled as fdct8 says. */
function fdct(block: Float64Array): void {
  for (let row = 0; row < 64; row += 8) fdct8(block, row, 1);
  for (let col = 0; col < 8; col++) fdct8(block, col, 8);
}

/** AAN_SCALE[0] = 1, AAN_SCALE[k] = √2 cos(kπ/16): the factor fdct8 leaves on output k. */
const AAN_SCALE = Float64Array.from({ length: 8 }, (_, k) =>
  k === 0 ? 1 : Math.SQRT2 * Math.cos((k * Math.PI) / 16),
);

/** Per zig-zag position, what to multiply fdct's output by before rounding to quantise it (A.3.4). */
function quantMultipliers(quant: Uint8Array): Float64Array {
  return Float64Array.from(quant, (q, k) => {
    const i = ZIGZAG[k] ?? 0;
    return 1 / (q * 8 * (AAN_SCALE[i >> 3] ?? 1) * (AAN_SCALE[i & 7] ?? 1));
  });
}

/**
 * Fills the three 8x8 blocks at (x0, y0) with level-shifted YCbCr (A.3.1; JFIF's conversion).
 * Pixels past the right or bottom edge repeat the last column or row, which the decoder crops
 * away again (A.2.4) and which avoids ringing that a black border would cause.
 */
function loadBlocks(
  rgb: Uint8Array,
  width: number,
  height: number,
  x0: number,
  y0: number,
  blocks: readonly [Float64Array, Float64Array, Float64Array],
): void {
  const [lum, cb, cr] = blocks;
  for (let dy = 0; dy < 8; dy++) {
    const row = Math.min(y0 + dy, height - 1) * width;
    for (let dx = 0; dx < 8; dx++) {
      const at = 3 * (row + Math.min(x0 + dx, width - 1));
      const r = rgb[at] ?? 0;
      const g = rgb[at + 1] ?? 0;
      const b = rgb[at + 2] ?? 0;
      const i = dy * 8 + dx;
      lum[i] = 0.299 * r + 0.587 * g + 0.114 * b - 128;
      cb[i] = -0.168736 * r - 0.331264 * g + 0.5 * b; // +128 offset and -128 level shift cancel
      cr[i] = 0.5 * r - 0.418688 * g - 0.081312 * b;
    }
  }
}

/** Packs variable-length codes MSB first into bytes, stuffing a 0x00 after every 0xFF (F.1.2.3). */
class BitWriter {
  private bytes: Uint8Array;
  private length = 0;
  private acc = 0; // pending bits, fewer than 8 between calls
  private count = 0;

  constructor(capacity: number) {
    this.bytes = new Uint8Array(capacity);
  }

  write(bits: number, size: number): void {
    // One call emits at most 2 bytes (7 pending + 16 new bits), each possibly stuffed.
    if (this.length + 4 > this.bytes.length) this.grow();
    this.acc = (this.acc << size) | (bits & ((1 << size) - 1));
    this.count += size;
    while (this.count >= 8) {
      this.count -= 8;
      const byte = (this.acc >>> this.count) & 0xff;
      this.bytes[this.length++] = byte;
      if (byte === 0xff) this.bytes[this.length++] = 0;
    }
    this.acc &= (1 << this.count) - 1;
  }

  /** 8-bit samples keep DC categories <= 11 and AC ones <= 10, so every symbol is in the Annex K tables. */
  symbol(codes: HuffmanCodes, symbol: number): void {
    this.write(codes.code[symbol] ?? 0, codes.size[symbol] ?? 0);
  }

  /** Pads the last byte with 1-bits (F.1.2.3); no code is all 1-bits (C.2), so they cannot complete one. */
  finish(): Buffer {
    if (this.count > 0) this.write(0xff, 8 - this.count);
    return Buffer.from(this.bytes.buffer, 0, this.length);
  }

  private grow(): void {
    const bigger = new Uint8Array(this.bytes.length * 2);
    bigger.set(this.bytes.subarray(0, this.length));
    this.bytes = bigger;
  }
}

/** Magnitude category SSSS of a coefficient or DC difference: its bit length (Tables F.1, F.2). */
function category(value: number): number {
  return 32 - Math.clz32(Math.abs(value));
}

/**
 * Huffman-codes one quantised block in zig-zag order (F.1.2.1, F.1.2.2) and returns its DC
 * value, which the next block of the component codes its DC as a difference from.
 */
function encodeBlock(out: BitWriter, zz: Int32Array, previousDc: number, dc: HuffmanCodes, ac: HuffmanCodes): number {
  const dcValue = zz[0] ?? 0;
  const diff = dcValue - previousDc;
  const dcSize = category(diff);
  out.symbol(dc, dcSize);
  // A negative value is sent as the low SSSS bits of value - 1, i.e. |value| with its bits flipped (F.1.2.1).
  out.write(diff < 0 ? diff - 1 : diff, dcSize);

  let run = 0;
  for (let k = 1; k < 64; k++) {
    const value = zz[k] ?? 0;
    if (value === 0) {
      run++;
      continue;
    }
    for (; run > 15; run -= 16) out.symbol(ac, ZRL);
    const size = category(value);
    out.symbol(ac, (run << 4) | size);
    out.write(value < 0 ? value - 1 : value, size);
    run = 0;
  }
  if (run > 0) out.symbol(ac, EOB);
  return dcValue;
}

/** One marker segment: 0xFF, the marker, a length that counts itself, then the body (B.1.1.4). */
function segment(marker: number, body: readonly number[]): Buffer {
  const out = Buffer.alloc(4 + body.length);
  out[0] = 0xff;
  out[1] = marker;
  out.writeUInt16BE(2 + body.length, 2);
  out.set(body, 4);
  return out;
}

const u16 = (n: number) => [n >> 8, n & 0xff];

const SOI = Buffer.from([0xff, 0xd8]);
const EOI = Buffer.from([0xff, 0xd9]);

/** JFIF APP0: version 1.01, no density units, 1:1 aspect ratio, no thumbnail. */
const APP0 = segment(0xe0, [0x4a, 0x46, 0x49, 0x46, 0x00, 1, 1, 0, ...u16(1), ...u16(1), 0, 0]);

/** DHT with the four tables of Annex K (B.2.4.2); the same for every image. */
const DHT = segment(
  0xc4,
  [DC_LUMA, AC_LUMA, DC_CHROMA, AC_CHROMA].flatMap((t) => [(t.tableClass << 4) | t.id, ...t.bits, ...t.values]),
);

/**
 * Scan header (B.2.3): components 1 (Y), 2 (Cb), 3 (Cr) interleaved, Y with DC/AC tables 0
 * and the chroma with tables 1; spectral selection 0..63 and no approximation, as baseline requires.
 */
const SOS = segment(0xda, [3, 1, 0x00, 2, 0x11, 3, 0x11, 0, 63, 0]);

/**
 * Encodes `rgb` (width * height * 3 bytes, row-major R, G, B) as a baseline JFIF JPEG.
 * `quality` is libjpeg's 1..100 scale.
 */
export function encodeJpeg(width: number, height: number, rgb: Uint8Array, quality = 90): Buffer {
  // SOF0 stores the dimensions in 16 bits; 0 would mean "height follows in a DNL marker".
  for (const n of [width, height]) {
    if (!Number.isInteger(n) || n < 1 || n > 0xffff) throw new RangeError(`invalid dimension ${n}`);
  }
  if (rgb.length !== width * height * 3) {
    throw new RangeError(`expected ${width * height * 3} bytes of RGB, got ${rgb.length}`);
  }
  if (!Number.isInteger(quality) || quality < 1 || quality > 100) {
    throw new RangeError(`quality must be an integer in 1..100, got ${quality}`);
  }

  const lumaQuant = scaledQuant(LUMA_QUANT, quality);
  const chromaQuant = scaledQuant(CHROMA_QUANT, quality);
  const dqt = segment(0xdb, [0, ...lumaQuant, 1, ...chromaQuant]); // Pq = 0: 8-bit entries
  const lumaScale = quantMultipliers(lumaQuant);
  const chromaScale = quantMultipliers(chromaQuant);
  // Frame header (B.2.2): 8-bit samples, three components, each 1x1 sampled (4:4:4).
  const sof0 = segment(0xc0, [8, ...u16(height), ...u16(width), 3, 1, 0x11, 0, 2, 0x11, 1, 3, 0x11, 1]);

  const blocks = [new Float64Array(64), new Float64Array(64), new Float64Array(64)] as const;
  const components = [
    { block: blocks[0], scale: lumaScale, dc: DC_LUMA_CODES, ac: AC_LUMA_CODES, previousDc: 0 },
    { block: blocks[1], scale: chromaScale, dc: DC_CHROMA_CODES, ac: AC_CHROMA_CODES, previousDc: 0 },
    { block: blocks[2], scale: chromaScale, dc: DC_CHROMA_CODES, ac: AC_CHROMA_CODES, previousDc: 0 },
  ];
  const zz = new Int32Array(64);
  const out = new BitWriter(Math.max(4096, width * height));

  // With one block per component per MCU, the MCUs are the 8x8 blocks in raster order (A.2.3).
  for (let y0 = 0; y0 < height; y0 += 8) {
    for (let x0 = 0; x0 < width; x0 += 8) {
      loadBlocks(rgb, width, height, x0, y0, blocks);
      for (const c of components) {
        fdct(c.block);
        for (let k = 0; k < 64; k++) zz[k] = Math.round((c.block[ZIGZAG[k] ?? 0] ?? 0) * (c.scale[k] ?? 0));
        c.previousDc = encodeBlock(out, zz, c.previousDc, c.dc, c.ac);
      }
    }
  }

  return Buffer.concat([SOI, APP0, dqt, sof0, DHT, SOS, out.finish(), EOI]);
}
