import { Context, type Deferred } from "effect"

/**
 * Completed when the process has been told to stop. A loop that must not be cut mid-step (the
 * producer between a Binance answer and its publish) watches it and ends at its next step boundary;
 * the role runner interrupts it only if that takes longer than its grace period.
 */
export class StopRequested extends Context.Tag("app/StopRequested")<StopRequested, Deferred.Deferred<void>>() {}
