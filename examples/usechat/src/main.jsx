// A whole chat app with no JS backend: useChat posts its UI messages to sse-fixup's
// /api/chat (ui_path), which asks llama-server for a streaming chat completion and answers
// in the AI SDK's UI message stream.  The tool runs here, in the browser (onToolCall);
// the SDK then sends the conversation again with the tool's output.
import { useChat } from '@ai-sdk/react';
import { DefaultChatTransport, lastAssistantMessageIsCompleteWithToolCalls } from 'ai';
import { useState } from 'react';
import { createRoot } from 'react-dom/client';

const WEATHER_TOOL = {
  type: 'function',
  function: {
    name: 'get_weather',
    description: 'Get the current weather for a city',
    parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
  },
};

function App() {
  const [input, setInput] = useState('');
  const { messages, sendMessage, addToolOutput, status, error } = useChat({
    // the extra body fields go into the chat request as they are (model, tools, ...)
    transport: new DefaultChatTransport({ api: '/api/chat', body: { model: 'local', tools: [WEATHER_TOOL] } }),
    sendAutomaticallyWhen: lastAssistantMessageIsCompleteWithToolCalls,
    async onToolCall({ toolCall }) {
      if (toolCall.toolName === 'get_weather') {
        addToolOutput({ tool: 'get_weather', toolCallId: toolCall.toolCallId,
                        output: { city: toolCall.input.city, temp_c: 21 } });
      }
    },
  });
  return (
    <main style={{ fontFamily: 'sans-serif', maxWidth: 640, margin: '2em auto' }}>
      {messages.map((m) => (
        <div key={m.id}>
          <b>{m.role}:</b>{' '}
          {m.parts.map((p, i) => {
            if (p.type === 'text') return <span key={i}>{p.text}</span>;
            if (p.type === 'reasoning') return <i key={i} style={{ color: 'gray' }}>{p.text}</i>;
            if (p.type.startsWith('tool-')) return <code key={i}>[{p.type.slice(5)} {JSON.stringify(p.input)}
              {p.output ? ` → ${JSON.stringify(p.output)}` : ''}]</code>;
            return null;
          })}
        </div>
      ))}
      {error && <p style={{ color: 'crimson' }}>{error.message}</p>}
      <form onSubmit={(e) => { e.preventDefault(); sendMessage({ text: input }); setInput(''); }}>
        <input value={input} onChange={(e) => setInput(e.target.value)} disabled={status !== 'ready'}
               placeholder="Ask about the weather" style={{ width: '80%' }} />
      </form>
    </main>
  );
}

createRoot(document.getElementById('root')).render(<App />);
