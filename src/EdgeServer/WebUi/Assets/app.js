// EdgeServer's chat page: talks to this server's own OpenAI API (/v1/models, /v1/chat/completions with SSE).
// Conversations and settings live in localStorage, an API key in sessionStorage (this tab only). Model text is
// only ever put into the page as Text nodes (see markdown.js).
import { renderMarkdown } from './markdown.js';

const STORE = {
    conversations: 'edgeserver.conversations',
    current: 'edgeserver.current',
    settings: 'edgeserver.settings',
    model: 'edgeserver.model',
    apiKey: 'edgeserver.apiKey',
};

const $ = id => document.getElementById(id);
const ui = {
    app: $('app'),
    sidebar: $('sidebar'),
    toggleSidebar: $('toggle-sidebar'),
    newChat: $('new-chat'),
    conversations: $('conversations'),
    model: $('model'),
    memory: $('memory'),
    toggleSettings: $('toggle-settings'),
    settings: $('settings'),
    systemPrompt: $('system-prompt'),
    temperature: $('temperature'),
    maxTokens: $('max-tokens'),
    messages: $('messages'),
    status: $('status'),
    composer: $('composer'),
    prompt: $('prompt'),
    send: $('send'),
    stop: $('stop'),
    keyDialog: $('key-dialog'),
    keyForm: $('key-form'),
    keyMessage: $('key-message'),
    key: $('key'),
};

function load(key, fallback) {
    try {
        const value = localStorage.getItem(key);
        return value === null ? fallback : JSON.parse(value);
    } catch {
        return fallback;
    }
}

function save(key, value) {
    try {
        localStorage.setItem(key, JSON.stringify(value));
    } catch (e) {
        setStatus(`Could not save in this browser: ${e.message}`);
    }
}

let conversations = load(STORE.conversations, []);
if (!Array.isArray(conversations)) {
    conversations = [];
}
let currentId = load(STORE.current, null);
let settings = { systemPrompt: '', temperature: '', maxTokens: '', ...load(STORE.settings, {}) };
let models = [];
let generation = null; // { controller } while a reply streams
let keyWaiters = [];

function setStatus(text) {
    ui.status.textContent = text;
}

/** crypto.randomUUID exists only in secure contexts, and a LAN address over http is none. */
function newId() {
    return Array.from(crypto.getRandomValues(new Uint8Array(16)), b => b.toString(16).padStart(2, '0')).join('');
}

function current() {
    return conversations.find(c => c.id === currentId) ?? null;
}

function persist() {
    save(STORE.conversations, conversations);
    save(STORE.current, currentId);
}

// ---- API ----

function apiHeaders(json) {
    const headers = {};
    if (json) {
        headers['Content-Type'] = 'application/json';
    }
    const key = sessionStorage.getItem(STORE.apiKey);
    if (key) {
        headers.Authorization = `Bearer ${key}`;
    }
    return headers;
}

async function errorOf(response) {
    try {
        const body = await response.json();
        if (body?.error?.message) {
            return body.error;
        }
    } catch {
        // not JSON
    }
    return { message: `${response.status} ${response.statusText}`, code: null };
}

/** Asks for a key and resolves once one is entered; the API's 401 code says whether one was missing or wrong. */
function askForKey(code) {
    ui.keyMessage.textContent = code === 'invalid_api_key'
        ? 'The server refused this key. Enter a valid API key.'
        : 'This server asks for an API key.';
    ui.key.value = '';
    if (!ui.keyDialog.open) {
        ui.keyDialog.showModal();
    }
    ui.key.focus();
    return new Promise(resolve => keyWaiters.push(resolve));
}

/** fetch with the key; on 401 asks for one and tries again. */
async function api(path, init = {}) {
    for (;;) {
        const response = await fetch(path, { ...init, headers: apiHeaders(init.body !== undefined) });
        if (response.status !== 401) {
            return response;
        }
        const error = await errorOf(response);
        sessionStorage.removeItem(STORE.apiKey);
        await askForKey(error.code);
    }
}

// ---- Models ----

function formatBytes(bytes) {
    if (typeof bytes !== 'number' || !Number.isFinite(bytes) || bytes <= 0) {
        return '';
    }
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let value = bytes;
    let unit = 0;
    while (value >= 1024 && unit < units.length - 1) {
        value /= 1024;
        unit++;
    }
    return `${value >= 100 || unit === 0 ? Math.round(value) : value.toFixed(1)} ${units[unit]}`;
}

function modelLabel(m) {
    const parts = [m.id];
    const details = m.details ?? {};
    if (details.status) {
        parts.push(details.status);
    }
    const memory = formatBytes(details.memory_bytes);
    if (memory) {
        parts.push(memory);
    }
    return parts.join(' · ');
}

function preferredModel() {
    const usable = models.filter(m => m.details?.status !== 'unavailable');
    const wanted = [current()?.model, load(STORE.model, null)];
    for (const id of wanted) {
        if (id && usable.some(m => m.id === id)) {
            return id;
        }
    }
    return (usable.find(m => m.details?.status === 'loaded') ?? usable[0])?.id ?? '';
}

async function loadModels() {
    let response;
    try {
        response = await api('/v1/models');
    } catch (e) {
        setStatus(`Could not reach the server: ${e.message}`);
        return;
    }
    if (!response.ok) {
        setStatus(`Could not list the models: ${(await errorOf(response)).message}`);
        return;
    }
    const list = await response.json();
    models = Array.isArray(list.data) ? list.data : [];
    const selected = ui.model.value || preferredModel();
    const sameIds = ui.model.options.length === models.length && models.every((m, i) => ui.model.options[i].value === m.id);
    if (sameIds) {
        // Update in place: rebuilding the options of an open picker would close it.
        models.forEach((m, i) => {
            const option = ui.model.options[i];
            option.textContent = modelLabel(m);
            option.disabled = m.details?.status === 'unavailable';
            option.title = m.details?.error ?? '';
        });
    } else {
        ui.model.replaceChildren(...models.map(m => {
            const option = new Option(modelLabel(m), m.id);
            option.disabled = m.details?.status === 'unavailable';
            option.title = m.details?.error ?? '';
            return option;
        }));
        if (models.length === 0) {
            const none = new Option('No models: put .gguf files in the models folder', '');
            none.disabled = true;
            ui.model.append(none);
        }
        ui.model.value = models.some(m => m.id === selected && m.details?.status !== 'unavailable') ? selected : preferredModel();
    }
    const memory = list.memory;
    if (memory && typeof memory.used_bytes === 'number') {
        const used = formatBytes(memory.used_bytes) || '0 B';
        ui.memory.textContent = memory.budget_bytes ? `Memory: ${used} of ${formatBytes(memory.budget_bytes)}` : `Memory: ${used} (no budget)`;
    }
    if (ui.status.textContent.startsWith('Could not')) {
        setStatus('');
    }
}

// ---- Conversations list ----

function renderConversations() {
    const items = [...conversations].sort((a, b) => b.updated - a.updated).map(c => {
        const li = document.createElement('li');
        li.dataset.id = c.id;
        const open = document.createElement('button');
        open.type = 'button';
        open.className = 'open';
        open.textContent = c.title || 'New chat';
        open.title = c.title || '';
        if (c.id === currentId) {
            li.classList.add('current');
            open.setAttribute('aria-current', 'true');
        }
        open.addEventListener('click', () => {
            if (generation) {
                return;
            }
            currentId = c.id;
            persist();
            renderAll();
            closeSidebar();
            ui.prompt.focus();
        });
        const del = document.createElement('button');
        del.type = 'button';
        del.className = 'delete';
        del.textContent = '×';
        del.setAttribute('aria-label', `Delete conversation: ${c.title || 'New chat'}`);
        del.addEventListener('click', () => deleteConversation(c.id));
        li.append(open, del);
        return li;
    });
    ui.conversations.replaceChildren(...items);
}

function deleteConversation(id) {
    if (generation && id === currentId) {
        generation.controller.abort();
    }
    conversations = conversations.filter(c => c.id !== id);
    if (currentId === id) {
        currentId = null;
    }
    persist();
    renderAll();
    ui.prompt.focus();
}

function newChat() {
    if (generation) {
        return;
    }
    currentId = null;
    persist();
    renderAll();
    closeSidebar();
    ui.prompt.focus();
}

// ---- Messages ----

/** Reasoning a model writes inline as <think>...</think> at the start of its reply, split from the answer. */
function splitThinking(raw) {
    const start = /^\s*<think>/.exec(raw);
    if (!start) {
        // Mid-stream, a reply that may still become "<think>" shows nothing yet.
        return '<think>'.startsWith(raw.trimStart()) && raw.trim() !== '' ? { reasoning: '', answer: '', thinking: true } : { reasoning: '', answer: raw, thinking: false };
    }
    const rest = raw.slice(start[0].length);
    const end = rest.indexOf('</think>');
    if (end < 0) {
        return { reasoning: rest.replace(/^\s+/, ''), answer: '', thinking: true };
    }
    return { reasoning: rest.slice(0, end).trim(), answer: rest.slice(end + '</think>'.length).replace(/^\s+/, ''), thinking: false };
}

function formatStats(stats) {
    if (!stats) {
        return '';
    }
    const parts = [];
    if (typeof stats.ttft === 'number') {
        parts.push(`${stats.ttft.toFixed(2)} s to first token`);
    }
    if (typeof stats.tps === 'number') {
        parts.push(`${stats.tps.toFixed(1)} tokens/s`);
    }
    if (typeof stats.tokens === 'number') {
        parts.push(`${stats.estimated ? '~' : ''}${stats.tokens} tokens`);
    }
    if (stats.stopped) {
        parts.push('stopped');
    }
    return parts.join(' · ');
}

/** One message's nodes; update() re-renders its text and keeps a reader's opened reasoning open. */
function messageView(message) {
    const article = document.createElement('article');
    article.className = `msg ${message.role}`;
    const role = document.createElement('div');
    role.className = 'role';
    role.textContent = message.role === 'user' ? 'You' : (message.model || 'Assistant');
    const reasoning = document.createElement('details');
    reasoning.className = 'reasoning';
    const summary = document.createElement('summary');
    const reasoningBody = document.createElement('div');
    reasoningBody.className = 'reasoning-body';
    reasoning.append(summary, reasoningBody);
    const content = document.createElement('div');
    content.className = 'content';
    const stats = document.createElement('div');
    stats.className = 'stats';
    article.append(role, reasoning, content, stats);

    const view = {
        node: article,
        update(state = message) {
            reasoning.hidden = !state.reasoning && !state.thinking;
            summary.textContent = state.thinking ? 'Reasoning…' : 'Reasoning';
            reasoningBody.textContent = state.reasoning ?? '';
            content.replaceChildren(renderMarkdown(state.content ?? ''));
            stats.textContent = state.error ? state.error : formatStats(state.stats);
            stats.classList.toggle('error', Boolean(state.error));
            stats.hidden = stats.textContent === '';
        },
    };
    view.update();
    return view;
}

function nearBottom() {
    const m = ui.messages;
    return m.scrollHeight - m.scrollTop - m.clientHeight < 80;
}

function scrollToBottom() {
    ui.messages.scrollTop = ui.messages.scrollHeight;
}

function renderMessages() {
    const conversation = current();
    if (!conversation || conversation.messages.length === 0) {
        const empty = document.createElement('p');
        empty.className = 'empty';
        empty.textContent = 'Pick a model and write a message.';
        ui.messages.replaceChildren(empty);
        return;
    }
    ui.messages.replaceChildren(...conversation.messages.map(m => messageView(m).node));
    scrollToBottom();
}

function renderAll() {
    renderConversations();
    renderMessages();
    if (current()?.model && models.some(m => m.id === current().model && m.details?.status !== 'unavailable')) {
        ui.model.value = current().model;
    }
}

// ---- Streaming a reply ----

/** The JSON of each server-sent event until [DONE], with the number of the network read that brought it. */
async function* events(body) {
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = '';
    for (let read = 1; ; read++) {
        const { value, done } = await reader.read();
        if (done) {
            return;
        }
        buffer += value;
        let end;
        while ((end = buffer.search(/\r?\n\r?\n/)) >= 0) {
            const block = buffer.slice(0, end);
            buffer = buffer.slice(end).replace(/^\r?\n\r?\n/, '');
            const data = block.split(/\r?\n/).filter(l => l.startsWith('data:')).map(l => l.slice(5).replace(/^ /, '')).join('\n');
            if (data === '[DONE]') {
                return;
            }
            if (data) {
                yield { event: JSON.parse(data), read };
            }
        }
    }
}

function requestMessages(conversation) {
    const messages = [];
    if (settings.systemPrompt.trim()) {
        messages.push({ role: 'system', content: settings.systemPrompt });
    }
    for (const m of conversation.messages) {
        if (m.role === 'user' || (m.role === 'assistant' && m.content)) {
            messages.push({ role: m.role, content: m.content });
        }
    }
    return messages;
}

function setBusy(busy) {
    ui.send.hidden = busy;
    ui.stop.hidden = !busy;
    ui.newChat.disabled = busy;
    ui.model.disabled = busy;
}

async function send(text) {
    const model = ui.model.value;
    if (!model) {
        setStatus('Choose a model first.');
        return;
    }
    let conversation = current();
    if (!conversation) {
        conversation = { id: newId(), title: '', created: Date.now(), updated: Date.now(), model, messages: [] };
        conversations.push(conversation);
        currentId = conversation.id;
    }
    if (!conversation.title) {
        conversation.title = text.replace(/\s+/g, ' ').trim().slice(0, 60);
    }
    conversation.model = model;
    conversation.updated = Date.now();
    const body = {
        model,
        messages: [...requestMessages(conversation), { role: 'user', content: text }],
        stream: true,
        stream_options: { include_usage: true },
    };
    if (settings.temperature !== '') {
        body.temperature = Number(settings.temperature);
    }
    if (settings.maxTokens !== '') {
        body.max_tokens = Number(settings.maxTokens);
    }
    const question = { role: 'user', content: text };
    const reply = { role: 'assistant', model, content: '', reasoning: '', stats: null };
    conversation.messages.push(question, reply);
    persist();
    renderConversations();
    // Appended, not re-rendered: earlier messages keep their state (an opened reasoning stays open).
    ui.messages.querySelector('.empty')?.remove();
    const view = messageView(reply);
    ui.messages.append(messageView(question).node, view.node);
    scrollToBottom();
    setStatus('');

    const controller = new AbortController();
    generation = { controller };
    setBusy(true);
    const started = performance.now();
    let first = null;
    let last = null;
    let firstRead = 0;
    let lastRead = 0;
    let deltas = 0;
    let usage = null;
    let raw = '';
    let reasoning = '';
    let frame = 0;
    const show = () => {
        frame = 0;
        const follow = nearBottom();
        const split = splitThinking(raw);
        view.update({ ...reply, content: split.answer, reasoning: (reasoning + split.reasoning).trim(), thinking: split.thinking || (reasoning !== '' && raw === '') });
        if (follow) {
            scrollToBottom();
        }
    };
    try {
        const response = await api('/v1/chat/completions', { method: 'POST', body: JSON.stringify(body), signal: controller.signal });
        if (!response.ok) {
            throw new Error((await errorOf(response)).message);
        }
        for await (const { event, read } of events(response.body)) {
            if (event.error) {
                throw new Error(event.error.message);
            }
            if (event.usage) {
                usage = event.usage;
            }
            const delta = event.choices?.[0]?.delta;
            const piece = delta?.content ?? '';
            // Reasoning models' thoughts, as llama-server and others stream them.
            const thought = delta?.reasoning_content ?? delta?.reasoning ?? '';
            if (piece || thought) {
                last = performance.now();
                first ??= last;
                firstRead ||= read;
                lastRead = read;
                deltas++;
                raw += piece;
                reasoning += thought;
                frame ||= requestAnimationFrame(show);
            }
        }
    } catch (e) {
        if (e.name === 'AbortError') {
            reply.stopped = true;
        } else {
            reply.error = e.message;
        }
    } finally {
        cancelAnimationFrame(frame);
        const split = splitThinking(raw);
        reply.content = split.answer;
        reply.reasoning = (reasoning + split.reasoning).trim();
        const tokens = usage?.completion_tokens ?? deltas;
        reply.stats = { tokens, estimated: !usage, stopped: Boolean(reply.stopped) };
        if (first !== null) {
            reply.stats.ttft = (first - started) / 1000;
            // Speed after the first token, as the server's own metric counts it. Text that arrived all in one read (a
            // fast model, a busy browser) has no duration to measure, so no speed is claimed for it.
            if (tokens > 1 && lastRead > firstRead && last > first) {
                reply.stats.tps = (tokens - 1) / ((last - first) / 1000);
            }
        }
        conversation.updated = Date.now();
        generation = null;
        setBusy(false);
        if (conversations.includes(conversation)) {
            persist();
            view.update();
            renderConversations();
        }
        if (!ui.composer.contains(document.activeElement) || document.activeElement === ui.stop) {
            ui.prompt.focus();
        }
        loadModels();
    }
}

// ---- Sidebar, settings, key ----

function closeSidebar() {
    ui.app.classList.remove('sidebar-open');
    ui.toggleSidebar.setAttribute('aria-expanded', 'false');
}

ui.toggleSidebar.addEventListener('click', () => {
    const open = ui.app.classList.toggle('sidebar-open');
    ui.toggleSidebar.setAttribute('aria-expanded', String(open));
    if (open) {
        ui.newChat.focus();
    }
});

// On a phone the list lies over the conversation: a tap beside it closes it.
document.querySelector('.main').addEventListener('click', e => {
    if (ui.app.classList.contains('sidebar-open') && !ui.toggleSidebar.contains(e.target)) {
        closeSidebar();
    }
});

ui.toggleSettings.addEventListener('click', () => {
    ui.settings.hidden = !ui.settings.hidden;
    ui.toggleSettings.setAttribute('aria-expanded', String(!ui.settings.hidden));
    if (!ui.settings.hidden) {
        ui.systemPrompt.focus();
    }
});

ui.systemPrompt.value = settings.systemPrompt;
ui.temperature.value = settings.temperature;
ui.maxTokens.value = settings.maxTokens;
for (const [input, name] of [[ui.systemPrompt, 'systemPrompt'], [ui.temperature, 'temperature'], [ui.maxTokens, 'maxTokens']]) {
    input.addEventListener('input', () => {
        settings = { ...settings, [name]: input.value };
        save(STORE.settings, settings);
    });
}

ui.keyForm.addEventListener('submit', e => {
    e.preventDefault();
    const key = ui.key.value.trim();
    if (!key) {
        return;
    }
    sessionStorage.setItem(STORE.apiKey, key);
    ui.keyDialog.close();
    const waiters = keyWaiters;
    keyWaiters = [];
    waiters.forEach(resolve => resolve());
});
// Nothing works without a key: Escape does not close the question.
ui.keyDialog.addEventListener('cancel', e => e.preventDefault());

ui.newChat.addEventListener('click', newChat);
ui.model.addEventListener('change', () => {
    save(STORE.model, ui.model.value);
    const conversation = current();
    if (conversation) {
        conversation.model = ui.model.value;
        persist();
    }
});
ui.model.addEventListener('focus', () => loadModels());

ui.composer.addEventListener('submit', e => {
    e.preventDefault();
    const text = ui.prompt.value;
    if (generation || text.trim() === '') {
        return;
    }
    ui.prompt.value = '';
    send(text);
});

ui.prompt.addEventListener('keydown', e => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
        e.preventDefault();
        ui.composer.requestSubmit();
    }
});

ui.stop.addEventListener('click', () => generation?.controller.abort());

document.addEventListener('keydown', e => {
    if (e.key !== 'Escape' || ui.keyDialog.open) {
        return;
    }
    if (generation) {
        generation.controller.abort();
    } else if (ui.app.classList.contains('sidebar-open')) {
        closeSidebar();
        ui.toggleSidebar.focus();
    }
});

// Another tab of this page changed the conversations.
window.addEventListener('storage', e => {
    if (e.key === STORE.conversations && !generation) {
        conversations = load(STORE.conversations, []);
        renderAll();
    }
});

renderAll();
loadModels();
