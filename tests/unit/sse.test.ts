import { describe, expect, it } from "vitest";
import { GatewayError } from "@/lib/errors";
import { EventSplitter, encodeData, inspectEvent } from "@/lib/sse";

const image = "data:image/png;base64," + "iVBORw0KGgo".repeat(500);
const stream =
  'data: {"type":"progress","step":1,"total_steps":2}\n\n' +
  ": keep-alive\n\n" +
  'data: {"type":"progress","step":2,"total_steps":2}\r\n\r\n' +
  `data: {"type":"complete","image_base64":"${image}","seed":5}\n\n`;

function splitAll(chunks: string[]): string[] {
  const splitter = new EventSplitter();
  return chunks.flatMap((chunk) => splitter.push(Buffer.from(chunk)).map((event) => event.toString()));
}

describe("EventSplitter", () => {
  it("cuts events at blank lines (LF or CRLF), keeping their bytes unchanged", () => {
    expect(splitAll([stream])).toEqual([
      'data: {"type":"progress","step":1,"total_steps":2}\n\n',
      ": keep-alive\n\n",
      'data: {"type":"progress","step":2,"total_steps":2}\r\n\r\n',
      `data: {"type":"complete","image_base64":"${image}","seed":5}\n\n`,
    ]);
  });

  it("gives the same events however the bytes are chunked", () => {
    const whole = splitAll([stream]);
    for (const size of [1, 2, 3, 5, 7, 64, 1000]) {
      const chunks = stream.match(new RegExp(`[\\s\\S]{1,${size}}`, "g")) ?? [];
      expect(splitAll(chunks), `chunks of ${size}`).toEqual(whole);
    }
  });

  it("holds an unfinished event back", () => {
    const splitter = new EventSplitter();
    expect(splitter.push(Buffer.from('data: {"type":"progress"'))).toEqual([]);
    expect(splitter.pending).toBe(24);
  });
});

describe("inspectEvent", () => {
  // An event's kind and type; its data is checked where it matters.
  const inspect = (text: string) => {
    const event = inspectEvent(Buffer.from(text));
    expect(event.bytes.toString()).toBe(text);
    return event.data === undefined ? { kind: "comment", type: event.type } : { kind: "event", type: event.type };
  };

  it("recognises each event type of the genuine server, as it writes them", () => {
    expect(inspect('data: {"type": "queued", "queue_position": 1, "request_id": "acf59bc3-0b5e-4d55-8a57-2b1f6f1c2f0e"}\n\n')).toEqual({ kind: "event", type: "queued" });
    expect(inspect('data: {"type": "progress", "step": 1, "total_steps": 6, "progress": 16}\n\n')).toEqual({ kind: "event", type: "progress" });
    expect(inspect('data: {"type":"progress","step":1,"total_steps":9,"progress":0.11,"message":"Denoising"}\n\n')).toEqual({ kind: "event", type: "progress" });
    expect(inspect(`data: {"type":"complete","image_base64":"${image}","seed":1}\n\n`)).toEqual({ kind: "event", type: "complete" });
    expect(inspect('data: {"type":"error","message":"CUDA out of memory"}\n\n')).toEqual({ kind: "event", type: "error" });
    expect(inspect('data: {"type":"queued","position":2}\n\n')).toEqual({ kind: "event", type: "queued" });
  });

  it("joins multi-line data and ignores comments and other fields", () => {
    expect(inspect('event: message\nid: 4\ndata: {"type":"progress",\ndata: "step":1,"total_steps":9}\n\n')).toEqual({ kind: "event", type: "progress" });
    expect(inspect(": ping\n\n")).toEqual({ kind: "comment" });
    const joined = inspectEvent(Buffer.from('data: {"type":"progress",\ndata: "step":1}\n\n'));
    expect(joined.data?.toString()).toBe('{"type":"progress",\n"step":1}');
  });

  it.each([
    ["data: {not json\n\n", "an event is not JSON"],
    ['data: {"type":"complete","seed":1}\n\n', "the complete event has no image"],
    ['data: {"type":"complete","image_base64":5}\n\n', "the complete event has no image"],
  ])("calls %j malformed: what the gateway itself relies on is missing", (text, reason) => {
    expect(() => inspect(text)).toThrow(GatewayError);
    expect(() => inspect(text)).toThrow(`Text-to-image server sent an invalid response: ${reason}`);
  });

  it.each([
    ['data: {"type":"progress"}\n\n', "progress"],
    ['data: {"type":"surprise","anything":[1]}\n\n', "surprise"],
    ['data: {"type":"queued","position":2}\n\n', "queued"],
    ["data: [1,2]\n\n", undefined],
    ['data: {"no_type":true}\n\n', undefined],
  ])("passes %j on: events and fields are the GPU server's to add", (text, type) => {
    expect(inspect(text)).toEqual({ kind: "event", type });
  });
});

describe("encodeData, the one writer of events the gateway keeps or makes", () => {
  it("writes a JSON over several lines as several data: lines, after its id", () => {
    expect(new TextDecoder().decode(encodeData('{"type":"progress",\n"step":1}', 3))).toBe('id: 3\ndata: {"type":"progress",\ndata: "step":1}\n\n');
    expect(new TextDecoder().decode(encodeData('{"type":"queued"}'))).toBe('data: {"type":"queued"}\n\n');
  });

  it("writes what inspectEvent reads back unchanged, an event split over two data: lines included", () => {
    const split = Buffer.from('data: {"type":"progress",\ndata: "step":2,"total_steps":6}\n\n');
    const read = inspectEvent(split);
    if (read.data === undefined) throw new Error("not an event");
    const again = inspectEvent(Buffer.from(encodeData(read.data.toString("utf8"), 5)));
    expect(again.type).toBe("progress");
    expect(again.data?.toString("utf8")).toBe('{"type":"progress",\n"step":2,"total_steps":6}');
  });
});
