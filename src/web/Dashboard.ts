import { Layer } from "effect"

/** The dashboard page at `/` and its bundled script; routes are added to the API's router here. */
export const DashboardLive: Layer.Layer<never> = Layer.empty
