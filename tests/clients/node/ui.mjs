// Drive the AI SDK's useChat machinery (DefaultChatTransport + readUIMessageStream: what
// useChat runs in the browser) against a URL, and print the assembled message as JSON.
// Usage: node ui.mjs '{"api": "http://.../api/chat", "body": {...}, "messages": [UIMessage...],
//                      "toolOutput": {...}}'   toolOutput: answer each tool call, send again
import { DefaultChatTransport, readUIMessageStream } from 'ai';

const spec = JSON.parse(process.argv[2]);
const transport = new DefaultChatTransport({ api: spec.api, body: spec.body ?? {} });
const out = { errors: [], rounds: [] };

async function round(messages) {
  const stream = await transport.sendMessages({
    chatId: 'chat-1', messages, trigger: 'submit-message', messageId: undefined,
    abortSignal: undefined,
  });
  let last;
  for await (const message of readUIMessageStream({
    stream, terminateOnError: true, onError: (e) => out.errors.push(String(e?.message ?? e)),
  })) {
    last = message;
  }
  return last;
}

let messages = spec.messages;
try {
  let message = await round(messages);
  out.rounds.push(message);
  const calls = (message?.parts ?? []).filter((p) => p.type.startsWith('tool-'));
  if (spec.toolOutput && calls.length) {
    for (const p of calls) { p.state = 'output-available'; p.output = spec.toolOutput; }
    messages = [...messages, message];
    out.rounds.push(await round(messages));
  }
} catch (e) {
  out.errors.push(`${e?.constructor?.name}: ${e?.message ?? e}`);
}
console.log(JSON.stringify(out));
