// Markdown to DOM nodes for model output. Every piece of text becomes a Text node (append/textContent), never
// HTML: whatever a model writes, "<script>" or "<img onerror>", is shown as characters. The page's CSP enforces
// this too (Trusted Types: handing a string to any HTML-parsing property or call throws).

const FENCE = /^ {0,3}(`{3,}|~{3,})\s*([^\s`]*)/;
const HEADING = /^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$/;
const RULE = /^ {0,3}([-*_])(\s*\1){2,}\s*$/;
const QUOTE = /^ {0,3}>\s?/;
const LIST = /^( {0,3})([-*+]|\d{1,9}[.)])\s+/;
const TABLE_RULE = /^\s*\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)*\|?\s*$/;

/** Renders markdown text into a DocumentFragment. An unclosed code fence (mid-stream) runs to the end. */
export function renderMarkdown(text) {
    const fragment = document.createDocumentFragment();
    blocks(text.replace(/\r\n?/g, '\n').split('\n'), fragment);
    return fragment;
}

function el(tag, className) {
    const node = document.createElement(tag);
    if (className) {
        node.className = className;
    }
    return node;
}

function startsBlock(line, next) {
    return FENCE.test(line) || HEADING.test(line) || RULE.test(line) || QUOTE.test(line) || LIST.test(line)
        || (line.includes('|') && next !== undefined && TABLE_RULE.test(next) && next.includes('-'));
}

function blocks(lines, parent) {
    let i = 0;
    while (i < lines.length) {
        const line = lines[i];
        let m;
        if (line.trim() === '') {
            i++;
        } else if ((m = FENCE.exec(line))) {
            const fence = m[1];
            const body = [];
            i++;
            while (i < lines.length && !(lines[i].trim().startsWith(fence[0].repeat(fence.length)) && lines[i].trim().replace(/[`~]/g, '') === '')) {
                body.push(lines[i++]);
            }
            i++;
            parent.append(codeBlock(body.join('\n'), m[2]));
        } else if ((m = HEADING.exec(line))) {
            const h = el(`h${Math.min(6, m[1].length + 2)}`);
            inline(m[2], h);
            parent.append(h);
            i++;
        } else if (RULE.test(line)) {
            parent.append(el('hr'));
            i++;
        } else if (QUOTE.test(line)) {
            const inner = [];
            while (i < lines.length && lines[i].trim() !== '' && (QUOTE.test(lines[i]) || inner.length > 0 && !startsBlock(lines[i], lines[i + 1]))) {
                inner.push(lines[i++].replace(QUOTE, ''));
            }
            const quote = el('blockquote');
            blocks(inner, quote);
            parent.append(quote);
        } else if ((m = LIST.exec(line))) {
            i = list(lines, i, parent);
        } else if (line.includes('|') && i + 1 < lines.length && TABLE_RULE.test(lines[i + 1]) && lines[i + 1].includes('-')) {
            i = table(lines, i, parent);
        } else {
            const p = el('p');
            const text = [];
            while (i < lines.length && lines[i].trim() !== '' && (text.length === 0 || !startsBlock(lines[i], lines[i + 1]))) {
                text.push(lines[i++].trim());
            }
            text.forEach((t, n) => {
                if (n > 0) {
                    p.append(el('br'));
                }
                inline(t, p);
            });
            parent.append(p);
        }
    }
}

function list(lines, i, parent) {
    const first = LIST.exec(lines[i]);
    const ordered = /\d/.test(first[2]);
    const node = el(ordered ? 'ol' : 'ul');
    if (ordered && parseInt(first[2], 10) !== 1) {
        node.start = parseInt(first[2], 10);
    }
    const indent = first[1].length;
    while (i < lines.length) {
        const m = LIST.exec(lines[i]);
        if (!m || m[1].length !== indent || /\d/.test(m[2]) !== ordered) {
            break;
        }
        const width = m[0].length;
        const item = [lines[i].slice(width)];
        i++;
        // The item goes on over indented lines (nested lists, code) and lazy continuation lines, across blank lines
        // only when indented text follows.
        while (i < lines.length) {
            const line = lines[i];
            if (line.trim() === '') {
                const next = lines[i + 1];
                if (next !== undefined && /^\s+\S/.test(next) && next.search(/\S/) >= width) {
                    item.push('');
                    i++;
                    continue;
                }
                break;
            }
            const lead = line.search(/\S/);
            if (lead >= width || lead > indent && LIST.test(line)) {
                item.push(line.slice(Math.min(lead, width)));
            } else if (!startsBlock(line, lines[i + 1])) {
                item.push(line.trim());
            } else {
                break;
            }
            i++;
        }
        const li = el('li');
        if (item.length === 1) {
            inline(item[0], li);
        } else {
            blocks(item, li);
            // A tight item's text is not a paragraph.
            if (li.firstChild?.nodeName === 'P' && !item.includes('')) {
                li.firstChild.replaceWith(...li.firstChild.childNodes);
            }
        }
        node.append(li);
        while (i < lines.length && lines[i].trim() === '' && LIST.test(lines[i + 1] ?? '') && LIST.exec(lines[i + 1])[1].length === indent) {
            i++;
        }
    }
    parent.append(node);
    return i;
}

function cells(line) {
    let row = line.trim();
    if (row.startsWith('|')) {
        row = row.slice(1);
    }
    if (row.endsWith('|') && !row.endsWith('\\|')) {
        row = row.slice(0, -1);
    }
    return row.split(/(?<!\\)\|/).map(c => c.trim().replace(/\\\|/g, '|'));
}

function table(lines, i, parent) {
    const node = el('table');
    const head = el('thead');
    const tr = el('tr');
    for (const c of cells(lines[i])) {
        const th = el('th');
        inline(c, th);
        tr.append(th);
    }
    head.append(tr);
    node.append(head);
    const body = el('tbody');
    i += 2;
    while (i < lines.length && lines[i].includes('|') && lines[i].trim() !== '') {
        const row = el('tr');
        for (const c of cells(lines[i])) {
            const td = el('td');
            inline(c, td);
            row.append(td);
        }
        body.append(row);
        i++;
    }
    node.append(body);
    parent.append(node);
    return i;
}

function codeBlock(code, language) {
    const wrap = el('div', 'code');
    const head = el('div', 'code-head');
    const label = el('span');
    label.textContent = language;
    const copy = el('button');
    copy.type = 'button';
    copy.textContent = 'Copy';
    copy.setAttribute('aria-label', language ? `Copy ${language} code` : 'Copy code');
    head.append(label, copy);
    const pre = el('pre');
    const node = el('code');
    if (/^[\w+#.-]+$/.test(language)) {
        node.className = `language-${language}`;
    }
    node.textContent = code;
    pre.append(node);
    copy.addEventListener('click', () => copyText(node, copy));
    wrap.append(head, pre);
    return wrap;
}

async function copyText(node, button) {
    try {
        // The clipboard API needs a secure context; a LAN address over http is not one, so select and copy there.
        if (navigator.clipboard && window.isSecureContext) {
            await navigator.clipboard.writeText(node.textContent);
        } else {
            window.getSelection().selectAllChildren(node);
            document.execCommand('copy');
        }
        button.textContent = 'Copied';
    } catch {
        button.textContent = 'Select and copy';
    }
    setTimeout(() => { button.textContent = 'Copy'; }, 1500);
}

// Code spans first (nothing inside them is markdown), then emphasis, links and bare URLs.
const INLINE = new RegExp([
    /(`+)([^`]|[^`][\s\S]*?[^`])\1(?!`)/.source,
    /\*\*(?=\S)([\s\S]*?\S)\*\*/.source,
    /(?<![\w])__(?=\S)([\s\S]*?\S)__(?![\w])/.source,
    /\*(?=[^\s*])([\s\S]*?[^\s*])\*/.source,
    /(?<![\w])_(?=[^\s_])([\s\S]*?[^\s_])_(?![\w])/.source,
    /~~(?=\S)([\s\S]*?\S)~~/.source,
    /\[([^\]\n]+)\]\(\s*<?([^\s)>]+)>?\s*\)/.source,
    /(https?:\/\/[^\s<>()]*[^\s<>().,;:!?'"*_])/.source,
].join('|'), 'g');

function inline(text, parent) {
    let last = 0;
    for (const m of text.matchAll(INLINE)) {
        if (m.index > last) {
            parent.append(text.slice(last, m.index));
        }
        if (m[1] !== undefined) {
            const code = el('code');
            code.textContent = /^ .* $/.test(m[2]) ? m[2].slice(1, -1) : m[2];
            parent.append(code);
        } else if (m[3] !== undefined || m[4] !== undefined) {
            const strong = el('strong');
            inline(m[3] ?? m[4], strong);
            parent.append(strong);
        } else if (m[5] !== undefined || m[6] !== undefined) {
            const em = el('em');
            inline(m[5] ?? m[6], em);
            parent.append(em);
        } else if (m[7] !== undefined) {
            const del = el('del');
            inline(m[7], del);
            parent.append(del);
        } else if (m[8] !== undefined) {
            link(m[8], m[9], m[0], parent);
        } else {
            link(m[10], m[10], m[0], parent);
        }
        last = m.index + m[0].length;
    }
    if (last < text.length) {
        parent.append(text.slice(last));
    }
}

/** Links only to http, https and mailto addresses; anything else (javascript:, data:) stays text. */
function link(label, target, source, parent) {
    let url;
    try {
        url = new URL(target, document.baseURI);
    } catch {
        parent.append(source);
        return;
    }
    if (!['http:', 'https:', 'mailto:'].includes(url.protocol)) {
        parent.append(source);
        return;
    }
    const a = el('a');
    a.href = url.href;
    a.rel = 'noopener noreferrer';
    a.target = '_blank';
    if (label === target) {
        a.textContent = label;
    } else {
        inline(label, a);
    }
    parent.append(a);
}
