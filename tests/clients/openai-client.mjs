// The official openai npm package and LangChain.js's ChatOpenAI, unmodified, against EdgeServer's /v1 routes.
// Usage: node openai-client.mjs <baseUrl> <model> <hermesModel> [case]. Prints one JSON document of what it saw.
// Cases: "all" (default), or "strict-auto": strict zodFunction tools with tool_choice auto.
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { zodFunction, zodResponseFormat, zodTextFormat } from 'openai/helpers/zod';
import { ChatOpenAI } from '@langchain/openai';
import { tool } from '@langchain/core/tools';
import { z } from 'zod';

const [baseUrl, model, hermes, which = 'all'] = process.argv.slice(2);
const client = new OpenAI({ baseURL: `${baseUrl}/v1`, apiKey: 'unused-without-keys', maxRetries: 0 });
const out = {};

const Rating = z.object({
  stars: z.int().min(1).max(5),
  votes: z.number().int().min(0).max(1000),
  label: z.enum(['good', 'bad']),
});
const Light = z.object({ room: z.enum(['kitchen', 'hall']), on: z.boolean() });
const lightParameters = {
  type: 'object',
  properties: { room: { type: 'string', enum: ['kitchen', 'hall'] }, on: { type: 'boolean' } },
  required: ['room', 'on'],
  additionalProperties: false,
};
const turnOn = 'Turn on the kitchen light';

if (which === 'strict-auto') {
  // Strict tools as zodFunction makes them, the model free to answer in text.
  const completion = await client.chat.completions.parse({
    model: hermes,
    temperature: 0,
    max_tokens: 200,
    messages: [{ role: 'user', content: turnOn }],
    tools: [zodFunction({ name: 'set_light', description: 'Switch a light', parameters: Light })],
    tool_choice: 'auto',
  });
  const message = completion.choices[0].message;
  out.strictAuto = { finish_reason: completion.choices[0].finish_reason, content: message.content, tool_calls: (message.tool_calls ?? []).map((c) => ({ name: c.function.name, parsed: c.function.parsed_arguments })) };
  process.stdout.write(JSON.stringify(out));
  process.exit(0);
}

// Chat: structured output from a zod schema with integer bounds, parsed by the SDK.
const parsed = await client.chat.completions.parse({
  model,
  temperature: 0,
  max_tokens: 200,
  messages: [{ role: 'user', content: 'Rate it' }],
  response_format: zodResponseFormat(Rating, 'rating'),
});
out.parsed = parsed.choices[0].message.parsed;
assert.ok(out.parsed, JSON.stringify(parsed));

// Responses: the same with text.format from zodTextFormat.
const parsedResponse = await client.responses.parse({
  model,
  temperature: 0,
  max_output_tokens: 200,
  input: 'Rate it',
  text: { format: zodTextFormat(Rating, 'rating') },
});
out.parsedResponse = parsedResponse.output_parsed;

// Responses with a function tool: a forced call, then its output sent back by previous_response_id.
const tools = [{ type: 'function', name: 'set_light', description: 'Switch a light', parameters: lightParameters, strict: false }];
const first = await client.responses.create({ model: hermes, temperature: 0, max_output_tokens: 200, input: turnOn, tools, tool_choice: 'required' });
const call = first.output.find((i) => i.type === 'function_call');
assert.ok(call, JSON.stringify(first));
const second = await client.responses.create({
  model: hermes,
  temperature: 0,
  max_output_tokens: 5,
  tools,
  previous_response_id: first.id,
  input: [{ type: 'function_call_output', call_id: call.call_id, output: '{"ok":true}' }],
});
out.responses = {
  id: first.id,
  call: { type: call.type, id: call.id, call_id: call.call_id, name: call.name, arguments: JSON.parse(call.arguments), status: call.status },
  outputs: first.output.length,
  followUp: { previous_response_id: second.previous_response_id, output_text: second.output_text, status: second.status },
};
const fetched = await client.responses.retrieve(first.id);
out.retrieved = { id: fetched.id, call_id: fetched.output[0]?.call_id };

// The same streamed: the SDK assembles the call from its events, then a streamed follow-up.
const stream = client.responses.stream({ model: hermes, temperature: 0, max_output_tokens: 200, input: turnOn, tools, tool_choice: { type: 'function', name: 'set_light' } });
const events = [];
let argumentDeltas = '';
for await (const event of stream) {
  events.push(event.type);
  if (event.type === 'response.function_call_arguments.delta') {
    argumentDeltas += event.delta;
  }
}
const streamed = await stream.finalResponse();
const streamedCall = streamed.output.find((i) => i.type === 'function_call');
assert.ok(streamedCall, JSON.stringify(streamed));
const followStream = client.responses.stream({
  model: hermes,
  temperature: 0,
  max_output_tokens: 5,
  tools,
  previous_response_id: streamed.id,
  input: [{ type: 'function_call_output', call_id: streamedCall.call_id, output: '{"ok":true}' }],
});
let followText = '';
for await (const event of followStream) {
  if (event.type === 'response.output_text.delta') {
    followText += event.delta;
  }
}
const followed = await followStream.finalResponse();
out.streamed = {
  events,
  call: { name: streamedCall.name, arguments: JSON.parse(streamedCall.arguments), deltas: argumentDeltas === streamedCall.arguments },
  followUp: { text: followText, output_text: followed.output_text, previous_response_id: followed.previous_response_id },
};

// An unknown previous_response_id: the SDK's NotFoundError.
try {
  await client.responses.create({ model, input: 'x', previous_response_id: 'resp_unknown' });
  out.unknownPrevious = { thrown: false };
} catch (e) {
  out.unknownPrevious = { thrown: true, isNotFound: e instanceof OpenAI.NotFoundError, status: e.status, param: e.param, code: e.code };
}

// LangChain.js: structured output from a zod schema, and a bound tool forced by name.
const chat = (name) => new ChatOpenAI({ model: name, apiKey: 'unused-without-keys', configuration: { baseURL: `${baseUrl}/v1` }, temperature: 0, maxTokens: 200, maxRetries: 0 });
out.langchainStructured = await chat(model).withStructuredOutput(Rating, { name: 'rating' }).invoke('Rate it');
const setLight = tool(async () => 'ok', { name: 'set_light', description: 'Switch a light', schema: Light });
const message = await chat(hermes).bindTools([setLight], { tool_choice: 'set_light' }).invoke(turnOn);
out.langchainTools = message.tool_calls.map((c) => ({ name: c.name, args: c.args, id: c.id }));

process.stdout.write(JSON.stringify(out));
