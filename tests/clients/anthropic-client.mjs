// The official @anthropic-ai/sdk npm package, unmodified, against EdgeServer's /v1/messages routes.
// Usage: node anthropic-client.mjs <baseUrl> <model> <hermesModel>. Prints one JSON document of what it saw.
import assert from 'node:assert/strict';
import Anthropic from '@anthropic-ai/sdk';

const [baseURL, model, hermes] = process.argv.slice(2);
const client = new Anthropic({ baseURL, apiKey: 'unused-without-keys', maxRetries: 0 });
const out = {};
const ask = { role: 'user', content: 'hi' };

// Messages, whole and streamed: the same greedy reply.
const whole = await client.messages.create({ model, max_tokens: 100, temperature: 0, messages: [ask] });
out.whole = { id: whole.id, type: whole.type, role: whole.role, model: whole.model, content: whole.content, stop_reason: whole.stop_reason, stop_sequence: whole.stop_sequence, usage: whole.usage };

const events = [];
let text = '';
const stream = client.messages.stream({ model, max_tokens: 100, temperature: 0, system: [{ type: 'text', text: 'Be brief.' }], messages: [{ role: 'user', content: [{ type: 'text', text: 'hi' }] }] });
stream.on('streamEvent', (event) => events.push(event.type));
stream.on('text', (delta) => { text += delta; });
const final = await stream.finalMessage();
out.streamed = { text, events, content: final.content, stop_reason: final.stop_reason, usage: final.usage };

// Stop sequences and max_tokens as stop reasons.
const stopped = await client.messages.create({ model, max_tokens: 100, temperature: 0, stop_sequences: ['ghi'], messages: [ask] });
out.stopped = { text: stopped.content[0]?.text, stop_reason: stopped.stop_reason, stop_sequence: stopped.stop_sequence };
const cut = await client.messages.create({ model, max_tokens: 3, temperature: 0, messages: [ask] });
out.cut = { text: cut.content[0]?.text, stop_reason: cut.stop_reason, output_tokens: cut.usage.output_tokens };

// Tools: a forced call, its tool_use block, then the tool_result sent back.
const tools = [{
  name: 'set_light',
  description: 'Switch a light',
  input_schema: { type: 'object', properties: { room: { type: 'string', enum: ['kitchen', 'hall'] }, on: { type: 'boolean' } }, required: ['room', 'on'] },
}];
const turnOn = { role: 'user', content: 'Turn on the kitchen light' };
const called = await client.messages.create({ model: hermes, max_tokens: 200, temperature: 0, messages: [turnOn], tools, tool_choice: { type: 'tool', name: 'set_light' } });
const use = called.content.find((b) => b.type === 'tool_use');
assert.ok(use, JSON.stringify(called));
out.toolCall = { id: use.id, name: use.name, input: use.input, stop_reason: called.stop_reason };
const answered = await client.messages.create({
  model: hermes,
  max_tokens: 5,
  temperature: 0,
  tools,
  messages: [turnOn, { role: 'assistant', content: called.content }, { role: 'user', content: [{ type: 'tool_result', tool_use_id: use.id, content: '{"ok":true}' }] }],
});
out.afterTool = { content: answered.content, stop_reason: answered.stop_reason };

// A streamed forced call: the tool_use block's input arrives as input_json_delta and is assembled by the SDK.
const toolStream = client.messages.stream({ model: hermes, max_tokens: 200, temperature: 0, messages: [turnOn], tools, tool_choice: { type: 'any' } });
const toolEvents = [];
toolStream.on('streamEvent', (event) => toolEvents.push(event.type === 'content_block_delta' ? event.delta.type : event.type));
const toolFinal = await toolStream.finalMessage();
out.streamedTool = { events: toolEvents, content: toolFinal.content, stop_reason: toolFinal.stop_reason };

// count_tokens: the rendered prompt's tokens, as the reply's usage counts them.
out.count = (await client.messages.countTokens({ model, messages: [ask] })).input_tokens;
out.countWithTools = (await client.messages.countTokens({ model: hermes, messages: [turnOn], tools })).input_tokens;
out.countWithoutTools = (await client.messages.countTokens({ model: hermes, messages: [turnOn] })).input_tokens;

// Errors as the SDK's classes.
async function failure(call) {
  try {
    await call();
  } catch (e) {
    return { name: e.constructor.name, status: e.status, type: e.error?.error?.type, message: e.error?.error?.message, isNotFound: e instanceof Anthropic.NotFoundError, isBadRequest: e instanceof Anthropic.BadRequestError };
  }
  throw new Error('the call succeeded');
}
out.unknownModel = await failure(() => client.messages.create({ model: 'no-such-model', max_tokens: 10, messages: [ask] }));
out.badRequest = await failure(() => client.messages.create({ model, max_tokens: 10, temperature: 1.5, messages: [ask] }));
out.streamedUnknownModel = await failure(async () => {
  for await (const _ of await client.messages.create({ model: 'no-such-model', max_tokens: 10, messages: [ask], stream: true })) {
    // nothing arrives
  }
});

console.log(JSON.stringify(out));
