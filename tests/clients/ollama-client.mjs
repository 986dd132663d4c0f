// The official ollama npm package, unmodified, against EdgeServer's /api routes.
// Usage: node ollama-client.mjs <baseUrl> <model> <hermesModel>. Prints one JSON document of what it saw.
import assert from 'node:assert/strict';
import { Ollama } from 'ollama';

const [host, model, hermes] = process.argv.slice(2);
const ollama = new Ollama({ host });
const out = {};
const greedy = { temperature: 0 };

out.version = (await ollama.version()).version;

const list = await ollama.list();
out.names = list.models.map((m) => m.name);
const listed = list.models.find((m) => m.name === `${model}:latest`);
assert.ok(listed, `${model}:latest is listed`);
assert.equal(listed.details.format, 'gguf');
assert.ok(listed.size > 0 && /^[0-9a-f]{64}$/.test(listed.digest));

const show = await ollama.show({ model: `${model}:latest` });
out.capabilities = show.capabilities;
out.architecture = show.model_info['general.architecture'];
out.family = show.details.family;

// Chat, whole and streamed: the same greedy reply.
const whole = await ollama.chat({ model: `${model}:latest`, messages: [{ role: 'user', content: 'hi' }], options: greedy });
out.chat = { content: whole.message.content, role: whole.message.role, done: whole.done, done_reason: whole.done_reason, eval_count: whole.eval_count, prompt_eval_count: whole.prompt_eval_count };
let streamed = '';
let parts = 0;
let last;
for await (const part of await ollama.chat({ model, messages: [{ role: 'user', content: 'hi' }], stream: true, options: greedy })) {
  streamed += part.message.content;
  parts++;
  last = part;
}
out.streamed = { content: streamed, parts, done: last.done, done_reason: last.done_reason, eval_count: last.eval_count, total_duration: last.total_duration, eval_duration: last.eval_duration };

// Tools: a call with arguments as an object, then its result sent back as a tool message.
const tools = [{
  type: 'function',
  function: {
    name: 'set_light',
    description: 'Switch a light',
    parameters: { type: 'object', properties: { room: { type: 'string', enum: ['kitchen', 'hall'] }, on: { type: 'boolean' } }, required: ['room', 'on'] },
  },
}];
const ask = { role: 'user', content: 'Turn on the kitchen light' };
// tool_choice is EdgeServer's extension (the successor model would never choose a call by itself); the client passes it through.
const called = await ollama.chat({ model: hermes, messages: [ask], tools, tool_choice: 'required', options: { ...greedy, num_predict: 200 } });
assert.equal(called.message.tool_calls?.length, 1, JSON.stringify(called));
const call = called.message.tool_calls[0];
assert.equal(typeof call.function.arguments, 'object');
out.toolCall = { name: call.function.name, arguments: call.function.arguments };
const answered = await ollama.chat({
  model: hermes,
  messages: [ask, called.message, { role: 'tool', tool_name: call.function.name, content: '{"ok":true}' }],
  tools,
  options: { ...greedy, num_predict: 5 },
});
out.afterTool = { content: answered.message.content, tool_calls: answered.message.tool_calls ?? null, done_reason: answered.done_reason };

// Generate: raw continues the prompt; an empty prompt loads the model.
const raw = await ollama.generate({ model, prompt: 'j', raw: true, options: greedy });
out.generate = { response: raw.response, done_reason: raw.done_reason, eval_count: raw.eval_count };
let generated = '';
for await (const part of await ollama.generate({ model, prompt: 'hi', stream: true, options: { ...greedy, num_predict: 5 } })) {
  generated += part.response;
  last = part;
}
out.generateStreamed = { response: generated, done_reason: last.done_reason, eval_count: last.eval_count };
const loaded = await ollama.generate({ model: hermes, prompt: '' });
out.load = { done: loaded.done, done_reason: loaded.done_reason, response: loaded.response };
out.psAfterLoad = (await ollama.ps()).models.map((m) => ({ name: m.name, size: m.size, expires_at: m.expires_at }));

// Structured output: a JSON schema as format, enforced by a grammar.
const schema = { type: 'object', properties: { room: { type: 'string', enum: ['kitchen', 'hall'] }, on: { type: 'boolean' } }, required: ['room', 'on'] };
const formatted = await ollama.chat({ model, messages: [{ role: 'user', content: 'Which light?' }], format: schema, options: greedy });
out.formatted = JSON.parse(formatted.message.content);
const json = await ollama.generate({ model, prompt: 'Answer in JSON', format: 'json', options: { ...greedy, num_predict: 8 } });
out.jsonMode = json.response.trimStart().slice(0, 1);

// Embeddings, new and old.
const embedded = await ollama.embed({ model, input: ['kitchen', 'hall'] });
out.embed = { count: embedded.embeddings.length, dimensions: embedded.embeddings.map((e) => e.length), prompt_eval_count: embedded.prompt_eval_count };
const old = await ollama.embeddings({ model, prompt: 'kitchen' });
out.embeddings = { dimensions: old.embedding.length, same: old.embedding.every((v, i) => Math.abs(v - embedded.embeddings[0][i]) < 1e-4) };

// keep_alive 0 unloads; afterwards nothing runs.
for (const name of [model, hermes]) {
  const unloaded = await ollama.generate({ model: name, prompt: '', keep_alive: 0 });
  assert.equal(unloaded.done_reason, 'unload');
}
out.psAfterUnload = (await ollama.ps()).models.map((m) => m.name);

// Errors arrive as the client's ResponseError with Ollama's message and status.
try {
  await ollama.chat({ model: 'no-such-model', messages: [{ role: 'user', content: 'hi' }] });
  out.unknownModel = null;
} catch (e) {
  out.unknownModel = { name: e.name, status: e.status_code, message: e.error };
}

process.stdout.write(JSON.stringify(out));
