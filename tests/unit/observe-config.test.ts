import { describe, expect, it } from "vitest";
import { ConfigError, parseConfig } from "@/lib/config";

describe("the logging configuration", () => {
  it("logs at info without prompts by default", () => {
    expect(parseConfig({})).toMatchObject({ logLevel: "info", logPrompts: false });
  });

  it.each([
    ["silent", "silent"],
    ["DEBUG", "debug"],
    [" warn ", "warn"],
    ["", "info"],
  ])("takes LOG_LEVEL=%j as %s", (value, level) => {
    expect(parseConfig({ LOG_LEVEL: value }).logLevel).toBe(level);
  });

  it.each([
    ["true", true],
    ["TRUE", true],
    ["false", false],
    ["", false],
  ])("takes LOG_PROMPTS=%j as %s", (value, logPrompts) => {
    expect(parseConfig({ LOG_PROMPTS: value }).logPrompts).toBe(logPrompts);
  });

  it.each([
    ["LOG_LEVEL", "verbose", "must be one of fatal, error, warn, info, debug, trace, silent"],
    ["LOG_PROMPTS", "yes", "must be true or false"],
  ])("stops on %s=%s, naming the variable and the form it needs", (name, value, form) => {
    expect(() => parseConfig({ [name]: value })).toThrow(ConfigError);
    expect(() => parseConfig({ [name]: value })).toThrow(`${name}="${value}": ${form}`);
  });
});
