/// <reference types="node" />
import { EventEmitter } from 'events';

/** The channel version this client speaks. */
export const CHANNEL_VERSION: number;

export type Role = 'active' | 'standby';

/** The first line of the channel. */
export interface Hello {
  event: 'hello';
  channel: number;
  /** This instance's id, in hex. */
  id: string;
  /** The queue's limits with `--queue`, else null. */
  queue: { window: number; capacity: number; max_payload: number } | null;
}

export interface Options {
  /** The channel's descriptor (default: $HANDOVER_EVENTS_FD). */
  fd?: number;
}

/**
 * Events that say what is true now (the hello, the role, the leader, the state,
 * the checkpoint) are replayed to a listener added after them.
 */
export class Handover extends EventEmitter {
  constructor(options?: Options);
  /** This instance's id, once the hello arrived. */
  id: string | null;
  role: Role | null;
  /** The leader's id, in hex. */
  leader: string | null;
  /** The highest checkpoint known. */
  checkpointId: number;
  queue: Hello['queue'];

  ready(): void;
  publishState(state: Buffer | Uint8Array | string): void;
  checkpoint(id: number): void;
  submit(id: number, payload?: unknown): void;
  process(handler: (payload: any, id: number) => boolean | Promise<boolean>): void;
  onShutdown(hook: () => void | Promise<void>): void;
  leave(): void;
  /** The service is alive (`handover run --watchdog`): at least every half of $WATCHDOG_USEC. */
  watchdog(): void;
  close(): void;

  on(event: 'hello', listener: (hello: Hello) => void): this;
  on(event: 'role', listener: (role: Role, leader: string | null) => void): this;
  on(event: 'active' | 'standby' | 'master' | 'slave', listener: (leader: string | null) => void): this;
  on(event: 'leader', listener: (leader: string | null) => void): this;
  /** mongoose-failover's: the roles as 'master' and 'slave'. */
  on(event: 'statechange', listener: (before: 'master' | 'slave' | null, now: 'master' | 'slave') => void): this;
  on(event: 'state', listener: (state: Buffer) => void): this;
  on(event: 'checkpoint' | 'synchronize' | 'checkpoint_held', listener: (id: number) => void): this;
  on(event: 'error', listener: (error: Error) => void): this;
  on(event: 'close', listener: () => void): this;
}

export function connect(options?: Options): Handover;

/** handover-lib's HandoverPeer, on `handover run`. */
export class HandoverPeer {
  constructor(startTime?: unknown, context?: unknown);
  startListening(shutdownCallback?: () => void | Promise<void>): void;
  startBroadcasting(): void;
}
