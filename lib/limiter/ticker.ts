/**
 * When the Redis limiter makes its round trip: never two at once, one asked
 * for during a run follows it at once, and else one within the time the
 * limiter asks for, with a little jitter so gateways do not poll in step.
 */
export class Ticker {
  private running = false;
  private again = false;
  private timer: NodeJS.Timeout | undefined;
  private nextAt = Infinity;
  private stopped = false;
  /** The run in progress, else the last one. */
  done: Promise<void> = Promise.resolve();

  /** `task` is the round trip; `idleMs`, after one, says how soon the next must be. */
  constructor(
    private readonly task: () => Promise<void>,
    private readonly idleMs: () => number,
  ) {}

  /** Runs the task now, or right after the run in progress. */
  now(): void {
    if (this.stopped) return;
    if (this.running) {
      this.again = true;
      return;
    }
    clearTimeout(this.timer);
    this.nextAt = Infinity;
    this.running = true;
    this.done = this.task().finally(() => {
      this.running = false;
      if (this.again) {
        this.again = false;
        this.now();
      } else {
        this.within(this.idleMs());
      }
    });
  }

  /** Makes sure the task runs within `ms`. */
  within(ms: number): void {
    if (this.stopped || this.running) return;
    const delay = ms * (0.8 + Math.random() * 0.2);
    if (Date.now() + delay >= this.nextAt) return;
    clearTimeout(this.timer);
    this.nextAt = Date.now() + delay;
    this.timer = setTimeout(() => {
      this.now();
    }, delay);
    this.timer.unref();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }
}
