/* Bansos Bot sandbox: a Telegram-like chat client for the Bot API emulator.
 *
 * Plain JavaScript, no dependencies, no build step. Everything the bot sends is
 * rendered from plain text plus Telegram entities with DOM nodes and textContent;
 * no string from the bot is ever parsed as HTML.
 */
"use strict";

// ------------------------------------------------------------------ page language

const STRINGS = {
  id: {
    tagline: "Bot sungguhan, Telegram tiruan, data sintetis — tanpa internet.",
    identities: "Identitas demo",
    identitiesTitle: "Identitas demo",
    identitiesHint:
      "Orang sintetis dari data demo. Klik NIK, tanggal lahir, nomor HP atau kode aktivasi untuk mengisinya ke kolom ketik obrolan yang terakhir dipakai.",
    reset: "Reset demo",
    youAre: "Anda sebagai",
    reconnecting: "Menyambung ulang…",
    emptyChat: "Belum ada pesan. Tekan MULAI untuk memulai percakapan dengan bot.",
    start: "MULAI",
    menu: "Menu",
    placeholder: "Tulis pesan…",
    send: "Kirim",
    showKeyboard: "Tampilkan tombol",
    commands: "Perintah bot",
    noCommands: "Bot belum memasang perintah.",
    shareContactTitle: "Bagikan nomor telepon?",
    shareContactText: "Bot akan menerima nomor telepon Anda: {phone}",
    share: "Bagikan",
    cancel: "Batal",
    ok: "OK",
    locationTitle: "Bagikan lokasi",
    locationHint: "Pilih tempat demo, atau ketik koordinat.",
    latitude: "Lintang",
    longitude: "Bujur",
    sendLocation: "Kirim lokasi",
    badCoordinates: "Koordinat tidak valid.",
    resetTitle: "Reset demo?",
    resetText:
      "Data demo dipulihkan: semua obrolan dikosongkan dan akun persona kembali seperti semula.",
    resetDone: "Data demo sudah dipulihkan.",
    resetting: "Memulihkan data demo…",
    edited: "diedit",
    birthDate: "Tgl lahir",
    phone: "HP",
    village: "Desa",
    noPhone: "— (tidak ada di data)",
    activationCode: "Kode aktivasi",
    location: "Lokasi",
    contact: "Kontak",
    sticker: "Stiker",
    photo: "Foto",
    voice: "Pesan suara",
    video: "Video",
    spoiler: "Klik untuk membuka",
    stickers: "Kirim stiker",
    failed: "Gagal: {error}",
  },
  en: {
    tagline: "The real bot, a pretend Telegram, synthetic data — no internet needed.",
    identities: "Demo identities",
    identitiesTitle: "Demo identities",
    identitiesHint:
      "Synthetic people from the demo data. Click a NIK, birth date, phone number or activation code to put it in the input of the chat you used last.",
    reset: "Reset demo",
    youAre: "You are",
    reconnecting: "Reconnecting…",
    emptyChat: "No messages yet. Press START to begin talking with the bot.",
    start: "START",
    menu: "Menu",
    placeholder: "Write a message…",
    send: "Send",
    showKeyboard: "Show buttons",
    commands: "Bot commands",
    noCommands: "The bot has not set any commands.",
    shareContactTitle: "Share your phone number?",
    shareContactText: "The bot will receive your phone number: {phone}",
    share: "Share",
    cancel: "Cancel",
    ok: "OK",
    locationTitle: "Share location",
    locationHint: "Pick a demo place, or type coordinates.",
    latitude: "Latitude",
    longitude: "Longitude",
    sendLocation: "Send location",
    badCoordinates: "Those coordinates are not valid.",
    resetTitle: "Reset the demo?",
    resetText: "The demo data is restored: every chat is emptied and the personas start over.",
    resetDone: "The demo data is restored.",
    resetting: "Restoring the demo data…",
    edited: "edited",
    birthDate: "Born",
    phone: "Phone",
    village: "Village",
    noPhone: "— (not in the registry)",
    activationCode: "Activation code",
    location: "Location",
    contact: "Contact",
    sticker: "Sticker",
    photo: "Photo",
    voice: "Voice message",
    video: "Video",
    spoiler: "Click to reveal",
    stickers: "Send a sticker",
    failed: "Failed: {error}",
  },
};

const STICKERS = ["👍", "🙏", "😊", "❤️", "😢", "🎉"];

const params = new URLSearchParams(window.location.search);
let uiLang = params.get("lang") === "en" ? "en" : "id";

function t(key, vars = {}) {
  let text = STRINGS[uiLang][key] ?? STRINGS.id[key] ?? key;
  for (const [name, value] of Object.entries(vars)) text = text.replace(`{${name}}`, value);
  return text;
}

function applyStaticStrings(root = document) {
  for (const node of root.querySelectorAll("[data-i18n]")) node.textContent = t(node.dataset.i18n);
  for (const node of root.querySelectorAll("[data-i18n-title]")) {
    node.title = t(node.dataset.i18nTitle);
    node.setAttribute("aria-label", node.title);
  }
}

// ------------------------------------------------------------------ small helpers

/** Create an element; children may be nodes or strings (strings become text nodes). */
function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "className") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  node.append(...children.filter((child) => child !== null && child !== undefined));
  return node;
}

// Icons as inline SVG (no emoji or icon fonts needed): [viewBox paths, filled?]
const ICONS = {
  send: [["M3 20.5 21.5 12 3 3.5v6.6L15.5 12 3 13.9z"], true],
  pin: [["M12 2a7 7 0 0 0-7 7c0 5.2 7 13 7 13s7-7.8 7-13a7 7 0 0 0-7-7zm0 9.6a2.6 2.6 0 1 1 0-5.2 2.6 2.6 0 0 1 0 5.2z"], true],
  phone: [
    ["M6.6 10.8a15.1 15.1 0 0 0 6.6 6.6l2.2-2.2c.3-.3.7-.4 1-.2 1.1.4 2.3.6 3.6.6.6 0 1 .4 1 1V20c0 .6-.4 1-1 1A17 17 0 0 1 3 4c0-.6.4-1 1-1h3.5c.6 0 1 .4 1 1 0 1.3.2 2.5.6 3.6.1.3 0 .7-.2 1z"],
    true,
  ],
  download: [["M12 4v11", "M7 10.5l5 5 5-5", "M5 20h14"], false],
  smile: [["M12 3a9 9 0 1 0 0 18 9 9 0 0 0 0-18z", "M8 14.5c1 1.3 2.3 2 4 2s3-.7 4-2", "M9 9.5h.01", "M15 9.5h.01"], false],
  keyboard: [["M3 6h18v12H3z", "M7 10h.01M11 10h.01M15 10h.01M7 14h10"], false],
};

function icon(name) {
  const [paths, filled] = ICONS[name];
  const svgNS = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(svgNS, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("class", `icon icon-${name}`);
  for (const data of paths) {
    const path = document.createElementNS(svgNS, "path");
    path.setAttribute("d", data);
    if (filled) path.setAttribute("fill", "currentColor");
    else {
      path.setAttribute("fill", "none");
      path.setAttribute("stroke", "currentColor");
      path.setAttribute("stroke-width", "2");
      path.setAttribute("stroke-linecap", "round");
      path.setAttribute("stroke-linejoin", "round");
    }
    svg.append(path);
  }
  return svg;
}

async function api(path, body) {
  const options =
    body === undefined
      ? {}
      : { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) };
  const response = await fetch(path, options);
  const data = await response.json().catch(() => ({}));
  if (!response.ok || data.ok === false) throw new Error(data.error || response.statusText);
  return data;
}

/** A link target we are willing to open: http(s) or mailto only. */
function safeHref(raw) {
  if (typeof raw !== "string") return null;
  let url;
  try {
    url = new URL(/^[a-z][a-z0-9+.-]*:/i.test(raw) ? raw : `https://${raw}`);
  } catch {
    return null;
  }
  return ["http:", "https:", "mailto:"].includes(url.protocol) ? url.href : null;
}

function formatTime(seconds) {
  if (!seconds) return "";
  const locale = uiLang === "en" ? "en-GB" : "id-ID";
  return new Date(seconds * 1000).toLocaleTimeString(locale, { hour: "2-digit", minute: "2-digit" });
}

function formatSize(bytes) {
  if (!Number.isFinite(bytes)) return "";
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

// ------------------------------------------------------------------ rich text (entities)

/** The element for one Telegram entity; `slice` is the text it covers. */
function entityNode(entity, slice) {
  switch (entity.type) {
    case "bold":
      return el("strong");
    case "italic":
      return el("em");
    case "underline":
      return el("u");
    case "strikethrough":
      return el("s");
    case "code":
      return el("code");
    case "pre":
      return el("pre", { dataset: entity.language ? { language: entity.language } : {} });
    case "blockquote":
      return el("blockquote");
    case "expandable_blockquote":
      return el("blockquote", { className: "expandable" });
    case "spoiler": {
      const node = el("span", { className: "spoiler", title: t("spoiler"), tabindex: 0 });
      const reveal = () => node.classList.add("revealed");
      node.addEventListener("click", reveal);
      node.addEventListener("keydown", (event) => event.key === "Enter" && reveal());
      return node;
    }
    case "text_link":
    case "url":
    case "email": {
      let target = slice;
      if (entity.type === "text_link") target = entity.url;
      if (entity.type === "email") target = `mailto:${slice}`;
      const href = safeHref(target);
      if (!href) return el("span", { className: "link-blocked" });
      return el("a", { href, target: "_blank", rel: "noopener noreferrer nofollow" });
    }
    case "bot_command":
      return el("span", { className: "bot-command", role: "button", tabindex: 0 });
    default:
      return el("span", { className: `entity-${String(entity.type).replace(/[^a-z_]/g, "")}` });
  }
}

/** Append text[start, end) to parent, wrapping the (sorted, nested) entities in it. */
function appendRange(parent, text, start, end, entities) {
  let position = start;
  let index = 0;
  while (index < entities.length) {
    const entity = entities[index];
    const from = Math.max(entity.offset, position);
    const to = Math.min(entity.end, end);
    const inner = [];
    let next = index + 1;
    while (next < entities.length && entities[next].offset < to) {
      const child = entities[next];
      inner.push({ ...child, offset: Math.max(child.offset, from), end: Math.min(child.end, to) });
      next += 1;
    }
    if (from > position) parent.append(text.slice(position, from));
    if (to > from) {
      const node = entityNode(entity, text.slice(from, to));
      appendRange(node, text, from, to, inner.filter((child) => child.end > child.offset));
      parent.append(node);
      position = to;
    }
    index = next;
  }
  if (position < end) parent.append(text.slice(position, end));
}

/** Telegram text + entities as a DocumentFragment (offsets are UTF-16, like JS strings). */
function renderRichText(text, entities) {
  const fragment = document.createDocumentFragment();
  const sorted = (entities || [])
    .filter((e) => Number.isInteger(e.offset) && Number.isInteger(e.length) && e.length > 0)
    .map((e) => ({ ...e, end: Math.min(e.offset + e.length, text.length) }))
    .sort((a, b) => a.offset - b.offset || b.end - a.end);
  appendRange(fragment, text, 0, text.length, sorted);
  return fragment;
}

// ------------------------------------------------------------------ page state

const state = {
  bot: { first_name: "Bansos Bot", username: "" },
  personas: [],
  places: [],
  identities: [],
  panes: [],
  activePane: null,
};

function personaByKey(key) {
  return state.personas.find((persona) => persona.key === key);
}

function showPageToast(text) {
  const toast = document.getElementById("page-toast");
  toast.textContent = text;
  toast.hidden = false;
  clearTimeout(showPageToast.timer);
  showPageToast.timer = setTimeout(() => (toast.hidden = true), 3000);
}

// ------------------------------------------------------------------ one chat pane

class ChatPane {
  constructor(side, personaKey) {
    this.side = side;
    this.persona = null;
    this.source = null;
    this.buffered = null; // events received while a snapshot is loading
    this.messages = new Map(); // message_id -> {data, node}
    this.keyboard = null;
    this.keyboardOpen = true;
    this.keyboardSeq = -1;
    this.commands = [];
    this.pendingButtons = new Map(); // message_id -> button element waiting for an answer

    const fragment = document.getElementById("pane-template").content.cloneNode(true);
    this.root = fragment.querySelector(".pane");
    this.root.dataset.pane = side;
    const find = (selector) => this.root.querySelector(selector);
    this.select = find(".persona-select");
    this.description = find(".persona-description");
    this.title = find(".chat-title");
    this.subtitle = find(".chat-subtitle");
    this.connection = find(".connection");
    this.list = find(".messages");
    this.empty = find(".empty-chat");
    this.toastNode = find(".toast");
    this.form = find(".composer-form");
    this.input = find(".composer-input");
    this.menuButton = find(".menu-button");
    this.menu = find(".commands-menu");
    this.keyboardToggle = find(".keyboard-toggle");
    this.stickerButton = find(".sticker-button");
    this.stickerPanel = find(".sticker-panel");
    this.keyboardNode = find(".reply-keyboard");
    this.overlay = find(".overlay");
    this.dialog = find(".dialog");
    applyStaticStrings(this.root);
    for (const node of this.root.querySelectorAll("[data-icon]")) {
      node.replaceChildren(icon(node.dataset.icon));
    }

    for (const persona of state.personas) this.select.append(el("option", { value: persona.key }));
    this.renderPersonaOptions();
    this.select.addEventListener("change", () => this.choose(this.select.value));
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.sendText(this.input.value);
    });
    this.input.addEventListener("input", () => this.onInput());
    this.menuButton.addEventListener("click", () => this.toggleMenu());
    for (const emoji of STICKERS) {
      const send = () => {
        this.stickerPanel.hidden = true;
        this.post("messages", { sticker: { emoji } });
      };
      const choice = el("button", { type: "button", className: "sticker-choice", text: emoji, onclick: send });
      this.stickerPanel.append(choice);
    }
    this.stickerButton.addEventListener("click", () => {
      this.closeMenu();
      this.stickerPanel.hidden = !this.stickerPanel.hidden;
    });
    this.keyboardToggle.addEventListener("click", () => {
      this.keyboardOpen = !this.keyboardOpen;
      this.renderKeyboard();
    });
    find(".start-button").addEventListener("click", () => this.sendText("/start"));
    this.list.addEventListener("click", (event) => {
      const command = event.target.closest(".bot-command");
      if (command) this.sendText(command.textContent);
    });
    this.root.addEventListener("focusin", () => (state.activePane = this));
    this.root.addEventListener("pointerdown", () => (state.activePane = this));

    document.getElementById("panes").append(this.root);
    this.choose(personaKey);
  }

  renderPersonaOptions() {
    for (const option of this.select.options) {
      const persona = personaByKey(option.value);
      option.textContent = `${persona.name} — ${persona.description[uiLang]}`;
    }
    if (this.persona) this.description.textContent = this.persona.description[uiLang];
  }

  // ---------------------------------------------------------------- persona and connection

  choose(key) {
    const persona = personaByKey(key) || state.personas[0];
    this.persona = persona;
    this.select.value = persona.key;
    this.root.dataset.persona = persona.key;
    this.description.textContent = persona.description[uiLang];
    this.clear();
    this.connect();
    updateAddress();
  }

  connect() {
    if (this.source) this.source.close();
    const source = new EventSource(`/api/events?persona=${encodeURIComponent(this.persona.key)}`);
    source.addEventListener("open", () => {
      this.connection.hidden = true;
      this.reload();
    });
    source.addEventListener("message", (event) => this.onEvent(JSON.parse(event.data)));
    source.addEventListener("error", () => (this.connection.hidden = false));
    this.source = source;
  }

  /** Replace the chat with a fresh snapshot; events arriving meanwhile are replayed after it. */
  async reload() {
    const key = this.persona.key;
    this.buffered = [];
    let chat;
    try {
      chat = await api(`/api/chats/${encodeURIComponent(key)}`);
    } catch (error) {
      this.buffered = null;
      this.toast(t("failed", { error: error.message }));
      return;
    }
    if (key !== this.persona.key) return; // the persona changed meanwhile
    const later = this.buffered || [];
    this.buffered = null;
    this.clearChat();
    for (const message of chat.messages) this.upsert(message, false);
    this.commands = chat.commands || [];
    this.setKeyboard(chat.reply_keyboard, chat.seq, true);
    const chatEvents = new Set(["message", "callback_answer"]);
    for (const event of later) if (!chatEvents.has(event.type) || event.seq > chat.seq) this.apply(event);
    this.updateEmpty();
    this.scrollToEnd();
  }

  clearChat() {
    this.messages.clear();
    this.list.replaceChildren();
    this.pendingButtons.clear();
    this.keyboard = null;
    this.keyboardSeq = -1;
    this.commands = [];
    this.renderKeyboard();
    this.updateEmpty();
  }

  clear() {
    this.buffered = null;
    this.clearChat();
    this.closeMenu();
    this.closeDialog();
  }

  onEvent(event) {
    if (this.buffered) this.buffered.push(event);
    else this.apply(event);
  }

  apply(event) {
    switch (event.type) {
      case "message": {
        const isNew = !this.messages.has(event.message.message_id);
        this.upsert(event.message, true);
        const shows = isNew && event.message.from_bot && event.message.sets_keyboard;
        this.setKeyboard(event.reply_keyboard, event.seq, shows);
        this.updateEmpty();
        break;
      }
      case "callback_answer":
        this.onAnswer(event.answer);
        break;
      case "commands":
        this.reloadCommands();
        break;
      case "reset":
        this.clear();
        break;
      case "ready":
        this.reload();
        break;
      default:
        break;
    }
  }

  async reloadCommands() {
    try {
      const chat = await api(`/api/chats/${encodeURIComponent(this.persona.key)}`);
      this.commands = chat.commands || [];
    } catch {
      /* the next reload brings them */
    }
  }

  // ---------------------------------------------------------------- messages

  upsert(message, live) {
    const known = this.messages.get(message.message_id);
    if (known && known.data.seq >= message.seq) return;
    if (message.deleted) {
      if (known) known.node.remove();
      this.messages.set(message.message_id, { data: message, node: null });
      return;
    }
    const node = this.renderMessage(message);
    if (known && known.node) {
      known.node.replaceWith(node);
    } else {
      const later = [...this.messages.entries()]
        .filter(([id, entry]) => id > message.message_id && entry.node)
        .sort(([a], [b]) => a - b)[0];
      if (later) later[1].node.before(node);
      else this.list.append(node);
    }
    this.messages.set(message.message_id, { data: message, node });
    if (live && !known) this.scrollToEnd();
  }

  renderMessage(message) {
    const row = el("div", {
      className: `message ${message.from_bot ? "incoming" : "outgoing"}`,
      dataset: { messageId: message.message_id, kind: message.kind },
    });
    const bubble = el("div", { className: `bubble kind-${message.kind}` });
    bubble.append(this.renderContent(message));
    const meta = el("span", { className: "meta" });
    if (message.edited) meta.append(el("span", { className: "edited", text: t("edited") }));
    meta.append(el("time", { text: formatTime(message.date) }));
    bubble.append(meta);
    row.append(bubble);
    if (message.inline_keyboard) row.append(this.renderInlineKeyboard(message));
    return row;
  }

  renderContent(message) {
    const content = el("div", { className: "content" });
    const caption = () => {
      if (!message.text) return;
      content.append(el("div", { className: "text" }, renderRichText(message.text, message.entities)));
    };
    switch (message.kind) {
      case "text":
        caption();
        break;
      case "document": {
        const doc = message.document || {};
        const href = `/api/chats/${encodeURIComponent(this.persona.key)}/files/${message.message_id}`;
        content.append(
          el(
            "a",
            { className: "document", href, download: doc.file_name || "file" },
            el("span", { className: "document-icon" }, icon("download")),
            el(
              "span",
              { className: "document-info" },
              el("span", { className: "document-name", text: doc.file_name || "file" }),
              el("span", { className: "document-size", text: formatSize(doc.size) }),
            ),
          ),
        );
        caption();
        break;
      }
      case "location":
      case "venue": {
        const where = message.venue || message.location || {};
        const point = message.location || where.location || {};
        const title = message.venue ? message.venue.title : t("location");
        content.append(
          el(
            "div",
            { className: "location" },
            el("span", { className: "pin" }, icon("pin")),
            el("span", {}, el("strong", { text: title }), el("br"), `${point.latitude}, ${point.longitude}`),
          ),
        );
        break;
      }
      case "contact": {
        const contact = message.contact || {};
        const name = [contact.first_name, contact.last_name].filter(Boolean).join(" ");
        content.append(
          el(
            "div",
            { className: "contact-card" },
            el("span", { className: "contact-avatar", "aria-hidden": "true" }, (name || "?").slice(0, 1)),
            el(
              "span",
              {},
              el("strong", { text: name || t("contact") }),
              el("br"),
              contact.phone_number || "",
            ),
          ),
        );
        break;
      }
      case "sticker":
        content.append(
          el("div", { className: "sticker", text: message.sticker?.emoji || "?", title: t("sticker") }),
        );
        break;
      case "photo":
        content.append(el("div", { className: "media-placeholder", text: t("photo") }));
        caption();
        break;
      default:
        content.append(el("div", { className: "media-placeholder", text: t(message.kind) }));
        caption();
    }
    return content;
  }

  renderInlineKeyboard(message) {
    const keyboard = el("div", { className: "inline-keyboard" });
    for (const row of message.inline_keyboard) {
      const line = el("div", { className: "inline-row" });
      for (const button of row) {
        if (button.callback_data !== undefined) {
          const node = el("button", { type: "button", className: "inline-button", text: button.text });
          const press = () => this.pressInline(message.message_id, button.callback_data, node);
          node.addEventListener("click", press);
          line.append(node);
        } else if (safeHref(button.url)) {
          line.append(
            el("a", {
              className: "inline-button link",
              href: safeHref(button.url),
              target: "_blank",
              rel: "noopener noreferrer nofollow",
              text: `${button.text} ↗`,
            }),
          );
        } else {
          const other = { type: "button", className: "inline-button", text: button.text, disabled: true };
          line.append(el("button", other));
        }
      }
      keyboard.append(line);
    }
    return keyboard;
  }

  updateEmpty() {
    const hasMessages = [...this.messages.values()].some((entry) => entry.node);
    this.empty.hidden = hasMessages;
    this.list.hidden = !hasMessages;
  }

  scrollToEnd() {
    this.list.scrollTop = this.list.scrollHeight;
  }

  // ---------------------------------------------------------------- reply keyboard

  setKeyboard(keyboard, seq, open) {
    if (seq < this.keyboardSeq) return;
    this.keyboardSeq = seq;
    const changed = JSON.stringify(keyboard) !== JSON.stringify(this.keyboard);
    this.keyboard = keyboard;
    if (open || changed) this.keyboardOpen = true;
    this.renderKeyboard();
  }

  renderKeyboard() {
    const keyboard = this.keyboard;
    this.input.placeholder = keyboard?.input_field_placeholder || t("placeholder");
    this.keyboardToggle.hidden = !keyboard;
    this.keyboardNode.hidden = !keyboard || !this.keyboardOpen;
    this.keyboardNode.replaceChildren();
    if (!keyboard) return;
    for (const row of keyboard.keyboard) {
      const line = el("div", { className: "reply-row" });
      for (const button of row) {
        const symbol = button.request_contact ? "phone" : button.request_location ? "pin" : null;
        const node = el(
          "button",
          { type: "button", className: "reply-button" },
          symbol ? el("span", { className: "reply-icon" }, icon(symbol)) : null,
          button.text,
        );
        node.addEventListener("click", () => this.pressReply(button));
        line.append(node);
      }
      this.keyboardNode.append(line);
    }
  }

  pressReply(button) {
    if (this.keyboard?.one_time_keyboard) {
      this.keyboardOpen = false;
      this.renderKeyboard();
    }
    if (button.request_contact) this.askContact();
    else if (button.request_location) this.askLocation();
    else this.sendText(button.text);
  }

  // ---------------------------------------------------------------- actions

  async post(path, body) {
    try {
      await api(`/api/chats/${encodeURIComponent(this.persona.key)}/${path}`, body);
      return true;
    } catch (error) {
      this.toast(t("failed", { error: error.message }));
      return false;
    }
  }

  async sendText(text) {
    const trimmed = text.trim();
    if (!trimmed) return;
    this.closeMenu();
    if (await this.post("messages", { text: trimmed })) {
      if (this.input.value.trim() === trimmed) this.input.value = "";
    }
  }

  async pressInline(messageId, data, node) {
    node.classList.add("pending");
    this.pendingButtons.set(messageId, node);
    setTimeout(() => node.classList.remove("pending"), 4000);
    await this.post("callbacks", { message_id: messageId, data });
  }

  onAnswer(answer) {
    const node = this.pendingButtons.get(answer.message_id);
    if (node) node.classList.remove("pending");
    this.pendingButtons.delete(answer.message_id);
    if (!answer.text) return;
    if (answer.show_alert) this.alert(answer.text);
    else this.toast(answer.text);
  }

  askContact() {
    const text = t("shareContactText", { phone: this.persona.phone_number });
    this.openDialog(t("shareContactTitle"), [el("p", { text })], [
      { label: t("cancel") },
      { label: t("share"), primary: true, action: () => this.post("messages", { contact: true }) },
    ]);
  }

  askLocation() {
    const places = el("div", { className: "places" });
    for (const place of state.places) {
      places.append(
        el(
          "button",
          {
            type: "button",
            className: "place",
            onclick: () => {
              this.closeDialog();
              this.post("messages", { location: { latitude: place.latitude, longitude: place.longitude } });
            },
          },
          el("strong", { text: place.name }),
          el("span", { text: place.note[uiLang] }),
        ),
      );
    }
    const number = (name, limit) =>
      el("input", { type: "number", step: "any", min: -limit, max: limit, "aria-label": t(name) });
    const latitude = number("latitude", 90);
    const longitude = number("longitude", 180);
    const coordinates = el(
      "div",
      { className: "coordinates" },
      el("label", {}, t("latitude"), latitude),
      el("label", {}, t("longitude"), longitude),
    );
    const hint = el("p", { className: "hint", text: t("locationHint") });
    this.openDialog(t("locationTitle"), [hint, places, coordinates], [
      { label: t("cancel") },
      {
        label: t("sendLocation"),
        primary: true,
        action: () => {
          const lat = Number.parseFloat(latitude.value);
          const lon = Number.parseFloat(longitude.value);
          if (!(Math.abs(lat) <= 90 && Math.abs(lon) <= 180)) {
            this.toast(t("badCoordinates"));
            return false;
          }
          this.post("messages", { location: { latitude: lat, longitude: lon } });
          return true;
        },
      },
    ]);
  }

  // ---------------------------------------------------------------- commands menu

  onInput() {
    const value = this.input.value;
    if (value.startsWith("/") && !value.includes(" ")) this.openMenu(value.slice(1));
    else this.closeMenu();
  }

  toggleMenu() {
    if (this.menu.hidden) this.openMenu("");
    else this.closeMenu();
  }

  openMenu(filter) {
    const commands = this.commands.filter((command) => command.command.startsWith(filter.toLowerCase()));
    this.menu.replaceChildren(el("div", { className: "menu-title", text: t("commands") }));
    if (!commands.length) this.menu.append(el("div", { className: "menu-empty", text: t("noCommands") }));
    for (const command of commands) {
      this.menu.append(
        el(
          "button",
          {
            type: "button",
            className: "menu-item",
            role: "menuitem",
            onclick: () => this.sendText(`/${command.command}`),
          },
          el("span", { className: "menu-command", text: `/${command.command}` }),
          el("span", { className: "menu-description", text: command.description }),
        ),
      );
    }
    this.menu.hidden = false;
  }

  closeMenu() {
    this.menu.hidden = true;
  }

  // ---------------------------------------------------------------- toasts and dialogs

  toast(text) {
    this.toastNode.textContent = text;
    this.toastNode.hidden = false;
    clearTimeout(this.toastTimer);
    this.toastTimer = setTimeout(() => (this.toastNode.hidden = true), 3000);
  }

  alert(text) {
    this.openDialog(null, [el("p", { className: "alert-text", text })], [{ label: t("ok"), primary: true }]);
  }

  /** A dialog inside the pane; an action returning false keeps it open. */
  openDialog(title, body, buttons) {
    const actions = el("div", { className: "dialog-actions" });
    for (const button of buttons) {
      actions.append(
        el("button", {
          type: "button",
          className: button.primary ? "primary" : "ghost",
          text: button.label,
          onclick: () => {
            if (button.action && button.action() === false) return;
            this.closeDialog();
          },
        }),
      );
    }
    this.dialog.replaceChildren(...(title ? [el("h3", { text: title })] : []), ...body, actions);
    this.overlay.hidden = false;
  }

  closeDialog() {
    this.overlay.hidden = true;
    this.dialog.replaceChildren();
  }
}

// ------------------------------------------------------------------ identities panel

function renderIdentities() {
  const list = document.getElementById("identity-list");
  list.replaceChildren();
  for (const person of state.identities) {
    const value = (field, text) =>
      el("button", {
        type: "button",
        className: "fill",
        dataset: { field },
        text,
        onclick: () => fillInput(text),
      });
    const details = el(
      "dl",
      {},
      el("dt", { text: "NIK" }),
      el("dd", {}, value("nik", person.nik)),
      el("dt", { text: t("birthDate") }),
      el("dd", {}, value("birth_date", person.birth_date)),
      el("dt", { text: t("phone") }),
      el(
        "dd",
        {},
        person.phone ? value("phone", person.phone) : el("span", { className: "muted", text: t("noPhone") }),
      ),
      ...(person.activation_code
        ? [
            el("dt", { text: t("activationCode") }),
            el("dd", {}, value("activation_code", person.activation_code)),
          ]
        : []),
      el("dt", { text: t("village") }),
      el("dd", { text: `${person.village} (${person.zone})` }),
    );
    list.append(
      el(
        "li",
        { className: "identity", dataset: { name: person.name } },
        el(
          "div",
          { className: "identity-name" },
          el("strong", { text: person.name }),
          el("span", { className: "programs", text: person.programs.join(" + ") }),
        ),
        details,
      ),
    );
  }
}

function fillInput(text) {
  const pane = state.activePane || state.panes[0];
  pane.input.value = text;
  pane.input.focus();
}

// ------------------------------------------------------------------ page-level controls

function updateAddress() {
  if (state.panes.length < 2) return;
  const query = new URLSearchParams({ left: state.panes[0].persona.key, right: state.panes[1].persona.key });
  if (uiLang === "en") query.set("lang", "en");
  window.history.replaceState(null, "", `?${query}`);
}

function setLanguage(lang) {
  uiLang = lang;
  document.documentElement.lang = lang;
  applyStaticStrings();
  for (const button of document.querySelectorAll("[data-lang]")) {
    button.setAttribute("aria-pressed", String(button.dataset.lang === lang));
  }
  for (const pane of state.panes) {
    pane.renderPersonaOptions();
    pane.renderKeyboard();
    for (const entry of pane.messages.values()) {
      if (entry.node) {
        const node = pane.renderMessage(entry.data);
        entry.node.replaceWith(node);
        entry.node = node;
      }
    }
  }
  renderIdentities();
  updateAddress();
}

function confirmReset() {
  const pane = state.activePane || state.panes[0];
  pane.openDialog(t("resetTitle"), [el("p", { text: t("resetText") })], [
    { label: t("cancel") },
    { label: t("reset"), primary: true, action: () => resetDemo() },
  ]);
}

/** Fast-forward the sandbox's clock past a Napza request's SLA (24 hours), so it moves on. */
async function advanceClock() {
  try {
    const data = await api("/api/clock", { minutes: 25 * 60 });
    showPageToast(t("clockDone").replace("{time}", data.now));
  } catch (error) {
    showPageToast(String(error.message || error));
  }
}

async function resetDemo() {
  const button = document.getElementById("reset");
  button.disabled = true;
  showPageToast(t("resetting"));
  try {
    await api("/api/reset", {});
    showPageToast(t("resetDone"));
  } catch (error) {
    showPageToast(t("failed", { error: error.message }));
  } finally {
    button.disabled = false;
  }
}

async function main() {
  const [personas, places, identities] = await Promise.all([
    api("/api/personas"),
    api("/api/places"),
    api("/api/identities"),
  ]);
  state.bot = personas.bot;
  state.personas = personas.personas;
  state.places = places.places;
  state.identities = identities.identities;

  const keys = state.personas.map((persona) => persona.key);
  const left = keys.includes(params.get("left")) ? params.get("left") : keys[0];
  const fallbackRight = keys.find((key) => key !== left) || left;
  const right = keys.includes(params.get("right")) ? params.get("right") : fallbackRight;
  state.panes = [new ChatPane("left", left), new ChatPane("right", right)];
  state.activePane = state.panes[0];
  for (const pane of state.panes) {
    pane.title.textContent = state.bot.first_name || "Bansos Bot";
    pane.subtitle.textContent = state.bot.username ? `@${state.bot.username} · bot` : "bot";
  }

  document.getElementById("reset").addEventListener("click", confirmReset);
  document.getElementById("clock").addEventListener("click", advanceClock);
  document.getElementById("toggle-identities").addEventListener("click", (event) => {
    const panel = document.getElementById("identities");
    panel.hidden = !panel.hidden;
    event.currentTarget.setAttribute("aria-expanded", String(!panel.hidden));
  });
  for (const button of document.querySelectorAll("[data-lang]")) {
    button.addEventListener("click", () => setLanguage(button.dataset.lang));
  }
  setLanguage(uiLang);
  document.body.dataset.ready = "true";
}

main().catch((error) => showPageToast(t("failed", { error: error.message })));
