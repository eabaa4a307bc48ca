import fc from 'fast-check';
import OpenAI from 'openai';
import { SimulatorServer } from './simulator.server';

type Message = { role: 'user' | 'assistant' | 'system'; content: string; prefix?: boolean };

interface Answer {
  content: string;
  contentDeltas: number;
  reasoningDeltas: number;
  model: string;
  usage: OpenAI.CompletionUsage | undefined;
}

/** Text where the tokenizer merges tokens into one character, and characters that take 2, 3 and 4 bytes. */
const MULTI_BYTE = 'naïve café 配信と流式 🚀👍🏽✨ — “quoted” ≈ 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 and 👨‍👩‍👧 family';

describe('SimulatorServer continuation', () => {
  let simulator: SimulatorServer;
  let baseUrl: string;
  let openai: OpenAI;

  beforeAll(async () => {
    simulator = new SimulatorServer({
      profile: 'instant',
      deployments: { east: { model: 'gpt-east', latency: 'fast' }, west: { latency: 'instant' } },
    });
    baseUrl = await simulator.listen();
    openai = new OpenAI({ baseURL: baseUrl, apiKey: 'x', maxRetries: 0 });
  });
  afterAll(() => simulator.close());

  async function stream(
    messages: Message[],
    extra: Record<string, unknown> = {},
    client: OpenAI = openai,
  ): Promise<Answer> {
    const chunks = await client.chat.completions.create({
      model: 'simulator',
      messages,
      stream: true,
      stream_options: { include_usage: true },
      ...extra,
    } as OpenAI.ChatCompletionCreateParamsStreaming);
    const answer: Answer = { content: '', contentDeltas: 0, reasoningDeltas: 0, model: '', usage: undefined };
    for await (const chunk of chunks) {
      answer.model = chunk.model;
      if (chunk.usage) answer.usage = chunk.usage;
      const delta = chunk.choices[0]?.delta as
        { content?: string | null; reasoning_content?: string } | undefined;
      if (delta?.content) {
        answer.content += delta.content;
        answer.contentDeltas++;
      }
      if (delta?.reasoning_content) answer.reasoningDeltas++;
    }
    return answer;
  }

  const user = (content: string): Message[] => [
    { role: 'system', content: 'You are terse.' },
    { role: 'user', content },
  ];
  const continuing = (content: string, prefix: string): Message[] => [
    ...user(content),
    { role: 'assistant', content: prefix },
  ];
  const vllm = { continue_final_message: true, add_generation_prompt: false };

  it('seeds the answer by the prompt only: not the model, the profile or the deployment', async () => {
    const prompt = user('Explain backpressure [sim tokens=40]');
    const plain = await stream(prompt);
    const answers = await Promise.all([
      stream(prompt, { model: 'simulator-fast' }),
      stream(prompt, { model: 'simulator-reasoning' }),
      stream(prompt, { model: 'anything' }, new OpenAI({ baseURL: simulator.urlFor('east'), apiKey: 'x' })),
      stream(prompt, { model: 'other' }, new OpenAI({ baseURL: simulator.urlFor('west'), apiKey: 'x' })),
    ]);
    expect(plain.contentDeltas).toBe(40);
    for (const answer of answers) expect(answer.content).toBe(plain.content);
    expect(answers[2].model).toBe('gpt-east');
    expect(answers[3].model).toBe('other');
    // The same messages as text parts are the same prompt.
    const parts = await stream([
      { role: 'system', content: [{ type: 'text', text: 'You are terse.' }] },
      { role: 'user', content: [{ type: 'text', text: 'Explain backpressure [sim tokens=40]' }] },
    ] as unknown as Message[]);
    expect(parts.content).toBe(plain.content);
  });

  it.each([
    ['continue_final_message', vllm, false],
    ['prefix', {}, true],
  ])('%s: streams exactly the rest of the answer, and bills only the rest', async (_form, extra, prefix) => {
    const prompt = user('Describe streaming [sim tokens=30]');
    const whole = await stream(prompt);
    const cut = whole.content.slice(0, Math.floor(whole.content.length / 2));
    const messages = continuing('Describe streaming [sim tokens=30]', cut);
    if (prefix) messages[2].prefix = true;
    const rest = await stream(messages, extra);
    expect(cut + rest.content).toBe(whole.content);
    expect(rest.reasoningDeltas).toBe(0);

    const ordinary = whole.usage!.prompt_tokens;
    expect(rest.usage!.prompt_tokens).toBeGreaterThan(ordinary + 3);
    expect(rest.usage!.completion_tokens).toBeLessThan(whole.usage!.completion_tokens);
    expect(rest.usage!.completion_tokens).toBeGreaterThan(0);
  });

  it('keeps [sim tokens=N] the length of the whole answer', async () => {
    const prompt = 'Count [sim tokens=25]';
    const whole = await stream(user(prompt));
    const first10 = await stream(user(prompt), { max_tokens: 10 });
    expect(first10.contentDeltas).toBeLessThanOrEqual(10);
    const rest = await stream(continuing(prompt, first10.content), vllm);
    expect(first10.contentDeltas + rest.contentDeltas).toBe(25);
    expect(first10.content + rest.content).toBe(whole.content);
  });

  it('continues from nothing as an ordinary answer, thinking included; mid-answer it does not think', async () => {
    const prompt = 'Think first [sim tokens=12]';
    const whole = await stream(user(prompt), { model: 'simulator-reasoning' });
    expect(whole.reasoningDeltas).toBeGreaterThan(0);
    const fromNothing = await stream(continuing(prompt, ''), { model: 'simulator-reasoning', ...vllm });
    expect(fromNothing.content).toBe(whole.content);
    expect(fromNothing.reasoningDeltas).toBe(whole.reasoningDeltas);
    const midAnswer = await stream(continuing(prompt, whole.content.slice(0, 5)), {
      model: 'simulator-reasoning',
      ...vllm,
    });
    expect(midAnswer.reasoningDeltas).toBe(0);
    expect(whole.content.slice(0, 5) + midAnswer.content).toBe(whole.content);
  });

  it('continues a non-streamed request too', async () => {
    const prompt = 'Whole body [sim tokens=20]';
    const whole = await stream(user(prompt));
    const cut = whole.content.slice(0, 7);
    const completion = await openai.chat.completions.create({
      model: 'simulator',
      messages: continuing(prompt, cut),
      ...vllm,
    } as OpenAI.ChatCompletionCreateParamsNonStreaming);
    expect(cut + completion.choices[0].message.content).toBe(whole.content);
  });

  it('continues text it did not write with a fresh answer, the same every time', async () => {
    const prompt = 'Something [sim tokens=15]';
    const whole = await stream(user(prompt));
    const foreign = 'Not what the simulator said';
    const first = await stream(continuing(prompt, foreign), vllm);
    const again = await stream(continuing(prompt, foreign), vllm);
    expect(first.content).toBe(again.content);
    expect(first.contentDeltas).toBe(15);
    expect(first.content).not.toBe(whole.content);
  });

  it('treats a final assistant message without a flag as an ordinary request', async () => {
    const prompt = 'Plain [sim tokens=15]';
    const whole = await stream(user(prompt));
    const cut = whole.content.slice(0, 10);
    const ordinary = await stream(continuing(prompt, cut));
    expect(ordinary.contentDeltas).toBe(15);
    expect(cut + ordinary.content).not.toBe(whole.content);
    expect(simulator.stats().faults).toBe(0);
  });

  it.each([
    [
      'continue_final_message after a user message',
      user('hi'),
      vllm,
      'continue_final_message',
      /final message is not an assistant message/,
    ],
    [
      'continue_final_message with add_generation_prompt',
      continuing('hi', 'so'),
      { continue_final_message: true, add_generation_prompt: true },
      'continue_final_message',
      /Cannot set both/,
    ],
    [
      'prefix on a user message',
      [{ role: 'user', content: 'hi', prefix: true }],
      {},
      'messages.[0].prefix',
      /only on the final message/,
    ],
    [
      'a continue_final_message that is no boolean',
      continuing('hi', 'so'),
      { continue_final_message: 'yes' },
      'continue_final_message',
      /expected a boolean/,
    ],
  ])('refuses %s with a 400', async (_case, messages, extra, param, message) => {
    const error = await stream(messages as Message[], extra).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(OpenAI.BadRequestError);
    expect(error).toMatchObject({ status: 400, param, type: 'invalid_request_error' });
    expect((error as Error).message).toMatch(message);
  });

  describe('for any cut, prefix + continuation is the uninterrupted answer', () => {
    /** Answers to two kinds of prompt: generated prose (seeded), and an echo full of multi-byte characters. */
    const prompts = fc.oneof(
      fc.integer({ min: 0, max: 2 ** 31 }).map((seed) => ({ content: `Tell me [sim tokens=60] #${seed}` })),
      fc.string({ unit: 'grapheme', minLength: 1, maxLength: 30 }).map((noise) => ({
        content: `[sim echo] ${MULTI_BYTE} ${noise.replaceAll('[', '(')} ${MULTI_BYTE}`,
      })),
    );
    const whole = new Map<string, string>();
    async function answerTo(content: string): Promise<string> {
      const known = whole.get(content);
      if (known !== undefined) return known;
      const answer = (await stream(user(content))).content;
      whole.set(content, answer);
      return answer;
    }

    it('a cut at any character (inside a token, between the tokens of one character)', async () => {
      await fc.assert(
        fc.asyncProperty(
          prompts,
          fc.double({ min: 0, max: 1, noNaN: true }),
          fc.boolean(),
          async (prompt, at, prefixForm) => {
            const answer = await answerTo(prompt.content);
            const characters = [...answer];
            const cut = characters.slice(0, Math.floor(at * characters.length)).join('');
            const messages = continuing(prompt.content, cut);
            if (prefixForm) messages[2].prefix = true;
            const rest = await stream(messages, prefixForm ? {} : vllm);
            expect(cut + rest.content).toBe(answer);
          },
        ),
        { numRuns: 60 },
      );
    });

    it('a cut at any byte, as a streaming decoder leaves the text so far', async () => {
      await fc.assert(
        fc.asyncProperty(prompts, fc.double({ min: 0, max: 1, noNaN: true }), async (prompt, at) => {
          const answer = await answerTo(prompt.content);
          const bytes = Buffer.from(answer);
          // A decoder fed the bytes so far holds back a character it has only part of.
          const cut = new TextDecoder().decode(bytes.subarray(0, Math.floor(at * bytes.length)), {
            stream: true,
          });
          const rest = await stream(continuing(prompt.content, cut), vllm);
          expect(Buffer.concat([Buffer.from(cut), Buffer.from(rest.content)]).equals(bytes)).toBe(true);
        }),
        { numRuns: 60 },
      );
    });
  });
});
