/**
 * The dashboard page's built script and stylesheet. `npm run build` (scripts/build.mjs) replaces this
 * module by one holding the built texts, so dist/main.js reads no file at run time. Run from source
 * (the tests, a dev run), it builds the page on first use with the same function, `buildPage` of
 * scripts/build.mjs (esbuild, a dev dependency).
 */
export interface PageAssets {
  readonly js: string
  readonly css: string
  /** CSP sources (`sha256-…`, unquoted) of the inline styles the page's libraries inject. */
  readonly styleHashes: ReadonlyArray<string>
}

export const loadPageAssets = async (): Promise<PageAssets> => {
  const script = new URL("../../scripts/build.mjs", import.meta.url).href
  const { buildPage } = (await import(/* @vite-ignore */ script)) as { readonly buildPage: () => Promise<PageAssets> }
  return buildPage()
}
