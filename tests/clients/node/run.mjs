// Drive the real Vercel AI SDK against a base URL and print what the app would see, as JSON.
// Usage: node run.mjs '{"baseURL": "...", "sdk": "current|legacy", "provider": "responses|chat|compatible",
//                       "call": "stream|generate", "tools": true, "roundtrip": false}'
import { z } from 'zod';

const spec = JSON.parse(process.argv[2]);
const legacy = spec.sdk === 'legacy';
const ai = await import(legacy ? 'ai-legacy' : 'ai');
const { createOpenAI } = await import(legacy ? 'ai-sdk-openai-legacy' : '@ai-sdk/openai');
const { createOpenAICompatible } = await import(
  legacy ? 'ai-sdk-openai-compatible-legacy' : '@ai-sdk/openai-compatible');

let model;
if (spec.provider === 'compatible') {
  model = createOpenAICompatible({ name: 'llama', baseURL: spec.baseURL, apiKey: 'none' }).chatModel('tiny');
} else {
  const openai = createOpenAI({ baseURL: spec.baseURL, apiKey: 'none' });
  model = spec.provider === 'responses' ? openai.responses('tiny') : openai.chat('tiny');
}

const tools = spec.tools ? {
  get_weather: ai.tool({
    description: 'Get the current weather for a city',
    inputSchema: z.object({ city: z.string() }),
  }),
} : undefined;

const prompt = spec.roundtrip ? {
  messages: [
    { role: 'user', content: 'What is the weather in Paris?' },
    { role: 'assistant', content: [{ type: 'tool-call', toolCallId: 'call_abc', toolName: 'get_weather',
                                     input: { city: 'Paris' } }] },
    { role: 'tool', content: [{ type: 'tool-result', toolCallId: 'call_abc', toolName: 'get_weather',
                                output: { type: 'json', value: { temp_c: 21 } } }] },
  ],
} : { prompt: spec.tools ? 'What is the weather in Paris?' : 'Say hello' };

const args = { model, tools, maxRetries: 0, ...prompt,
               ...(spec.tools && !spec.roundtrip ? { toolChoice: 'required' } : {}) };
const out = { errors: [] };
// an error part may carry an Error, a string or the raw error chunk (the 3.0.41 line)
const fmt = (e) => typeof e === 'string' ? e
  : (e?.message ?? e?.error?.message ?? JSON.stringify(e));
const timer = setTimeout(() => {
  out.errors.push('timeout: the SDK never settled');
  console.log(JSON.stringify(out));
  process.exit(0);
}, 20000);
try {
  let r;
  if (spec.call === 'stream') {
    r = ai.streamText({ ...args, onError: ({ error }) => out.errors.push(fmt(error)) });
    for await (const part of r.fullStream) {
      if (part.type === 'error') out.errors.push(fmt(part.error));
    }
  } else {
    r = await ai.generateText(args);
  }
  out.finishReason = await r.finishReason;
  out.text = await r.text;
  out.reasoning = (await r.reasoningText) ?? '';
  out.toolCalls = (await r.toolCalls).map((c) => ({ toolName: c.toolName, input: c.input,
                                                   invalid: c.invalid ?? false, error: c.error ? String(c.error.message ?? c.error) : undefined }));
} catch (e) {
  out.errors.push(`thrown: ${e?.name}: ${e?.message}`);
}
clearTimeout(timer);
console.log(JSON.stringify(out));
