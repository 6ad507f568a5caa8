import { NodeHttpServer } from "@effect/platform-node"
import { Effect, Layer } from "effect"
import { createServer } from "node:http"
import { installClientErrorHandler } from "./ClientErrors.js"
import { HotResponses, withHotPath } from "./HotPath.js"
import { httpServer } from "./Http.js"
import { SecurityConfig } from "./Security.js"

/** The API listening on `port`/`host`, with the hot path for /trades/latest in front of the pipeline. */
export const listeningServer = (options: { readonly port: number; readonly host: string }) =>
  Layer.unwrapEffect(
    Effect.map(Effect.all([HotResponses, SecurityConfig]), ([hot, settings]) =>
      httpServer(NodeHttpServer.layer(() => withHotPath(installClientErrorHandler(createServer(), settings), hot), options))
    )
  ).pipe(Layer.provideMerge(HotResponses.Default))
