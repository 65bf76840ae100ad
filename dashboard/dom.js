// @ts-check
// DOM helpers: build elements from a tag, properties and children; find the
// page's fixed elements; read the value of the control an event came from.

/**
 * A child of {@linkcode h}: nodes and text are appended, null, undefined and
 * false are skipped, arrays are flattened.
 * @typedef {Node | string | number | boolean | null | undefined | ChildList} Child
 * @typedef {Child[]} ChildList
 */

// Set as properties, not attributes: their attribute is only the initial value.
const PROPS = new Set(["checked", "value", "hidden", "disabled", "selected", "indeterminate", "title"]);

/**
 * An element with properties (class, dataset, style, on<event> listeners,
 * PROPS, else attributes) and children.
 * @template {keyof HTMLElementTagNameMap} K
 * @param {K} tag
 * @param {Record<string, any>} [props]
 * @param {...Child} children
 * @returns {HTMLElementTagNameMap[K]}
 */
export function h(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key === "style") Object.assign(node.style, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (PROPS.has(key)) /** @type {Record<string, unknown>} */ (/** @type {unknown} */ (node))[key] = value;
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of present(children)) node.append(child instanceof Node ? child : String(child));
  return node;
}

/**
 * The first element matching `selector`: for elements of index.html, which are
 * always there.
 * @param {string} selector
 * @param {ParentNode} [root]
 * @returns {HTMLElement}
 */
export function $(selector, root = document) {
  return /** @type {HTMLElement} */ (root.querySelector(selector));
}

/**
 * Replaces a node's children, skipping null, undefined and false.
 * @param {Element} node
 * @param {...Child} children
 */
export function fill(node, ...children) {
  node.replaceChildren(...present(children).map((c) => (c instanceof Node ? c : String(c))));
}

/**
 * The children worth appending, flattened.
 * @param {Child[]} children
 * @returns {(Node | string | number | true)[]}
 */
function present(children) {
  /** @type {(Node | string | number | true)[]} */
  const out = [];
  for (const child of children) {
    if (Array.isArray(child)) out.push(...present(child));
    else if (child !== null && child !== undefined && child !== false) out.push(child);
  }
  return out;
}

/**
 * The value of the input or select an event came from.
 * @param {Event} event
 * @returns {string}
 */
export function targetValue(event) {
  return /** @type {HTMLInputElement | HTMLSelectElement} */ (event.target).value;
}

/**
 * Whether the checkbox an event came from is ticked.
 * @param {Event} event
 * @returns {boolean}
 */
export function targetChecked(event) {
  return /** @type {HTMLInputElement} */ (event.target).checked;
}

/**
 * A search box that calls `onInput` with its text as the user types.
 * @param {string} placeholder
 * @param {string} value
 * @param {(text: string) => void} onInput
 * @returns {HTMLElement}
 */
export function searchBox(placeholder, value, onInput) {
  return h("input", {
    type: "search",
    class: "input",
    placeholder,
    value,
    oninput: (/** @type {Event} */ ev) => onInput(targetValue(ev)),
  });
}
