// zeromq.js allows one send() in flight per socket (a second throws EBUSY), but a ring collective wants
// to fire a send from every receive handler without waiting for it. This queue keeps the sends of one
// socket in order and drains them one at a time; the frames are views, so queueing copies nothing.

import type { MessageLike } from 'zeromq';

interface FrameSink {
  send(frames: MessageLike[]): Promise<void>;
}

export class SendQueue {
  private queue: MessageLike[][] = [];
  private head = 0;
  private draining = false;
  private failure: Error | null = null;
  private idleWaiters: (() => void)[] = [];

  constructor(
    private readonly socket: FrameSink,
    /** Called once if a send fails (for example its sendTimeout expired); later sends are dropped. */
    private readonly onError: (err: Error) => void,
  ) {}

  push(frames: MessageLike[]): void {
    if (this.failure !== null) return;
    this.queue.push(frames);
    if (!this.draining) void this.drain();
  }

  /** Messages not yet handed to ZeroMQ. */
  get backlog(): number {
    return this.queue.length - this.head;
  }

  /** Resolves once every queued message has been handed to ZeroMQ (or the queue failed). */
  idle(): Promise<void> {
    if (!this.draining) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private async drain(): Promise<void> {
    this.draining = true;
    try {
      while (this.head < this.queue.length) {
        const frames = this.queue[this.head];
        this.queue[this.head++] = undefined as unknown as MessageLike[];
        if (this.head > 1024 && this.head * 2 > this.queue.length) {
          this.queue = this.queue.slice(this.head);
          this.head = 0;
        }
        await this.socket.send(frames);
      }
    } catch (err) {
      this.failure = err instanceof Error ? err : new Error(String(err));
      this.queue = [];
      this.head = 0;
      this.onError(this.failure);
    } finally {
      this.queue.length = 0;
      this.head = 0;
      this.draining = false;
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      for (const w of waiters) w();
    }
  }
}
