/** Small DOM helpers: elements are built with text nodes only (no innerHTML: nothing the API says is markup). */

type Child = Node | string | number | null | undefined | false

export const el = <K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attributes: Record<string, string | undefined> = {},
  ...children: ReadonlyArray<Child>
): HTMLElementTagNameMap[K] => {
  const node = document.createElement(tag)
  for (const [name, value] of Object.entries(attributes)) if (value !== undefined) node.setAttribute(name, value)
  for (const child of children) append(node, child)
  return node
}

const append = (parent: Node, child: Child) => {
  if (child === null || child === undefined || child === false) return
  parent.appendChild(typeof child === "string" || typeof child === "number" ? document.createTextNode(String(child)) : child)
}

/** Replaces `parent`'s children. */
export const replaceChildren = (parent: Element, ...children: ReadonlyArray<Child>) => {
  parent.textContent = ""
  for (const child of children) append(parent, child)
}

/** The element with `id`, which the page's HTML must have. */
export const byId = <T extends HTMLElement = HTMLElement>(id: string): T => {
  const node = document.getElementById(id)
  if (node === null) throw new Error(`the page has no #${id}`)
  return node as T
}

/** Sets a text node's content only when it changed (no layout work for an unchanged cell). */
export const setText = (node: Element, text: string) => {
  if (node.textContent !== text) node.textContent = text
}
