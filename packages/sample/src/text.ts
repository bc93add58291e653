/** Word lists and the message text generator. All names are fictional. */
import type { Rng } from './random.js';

const words = (text: string): readonly string[] => text.trim().split(/\s+/);

export const FIRST_NAMES = words(`
  Ana José Zoë Liam Olivia Noah Emma Mateo Sofía Lucas Amélie Björn Chloé Dmitri Aiko Kwame
  Priya Tomás Ingrid Yusuf Mei Hannah Oskar Léa Rafael Nadia Jonas Fatima Ethan Ines Kai Nora
  Mohammed Élodie Sven Grace Hugo Lena Marco Aisha Felix Maja Diego Yara Leo Clara Omar Freya
`);

export const LAST_NAMES = words(`
  Souza Álvarez Martin Smith Novak Müller Rossi Dubois Jensen Kowalski Tanaka Mensah Sharma
  García Andersen Yilmaz Chen Schmidt Berg Moreau Costa Haddad Walker Silva Nakamura O'Brien
  Petrov Lindqvist Okafor Fernández Weber Kim Nguyen Brennan
`);

/** Group names; the first two are always present (both have non-ASCII names on purpose). */
export const GROUP_NAMES = [
  'Família 👨‍👩‍👧', 'Café ☕ Tuesdays', 'Climbing crew 🧗', 'Book club 📚', 'Flat 4B',
  'Work – platform team', 'Neighbours 🏡', 'Παρέα', 'Wedding planning 💍', '5-a-side ⚽',
] as const;

const WORDS = words(`
  the a to and I you it is that of in for on we this my be have just so but not with are
  was at do what if get can go me your all will like know about think time up out there now
  one really going good today tomorrow tonight later morning evening week weekend day night
  home work office train bus car late early soon still again already maybe probably actually
  sure thanks please sorry okay cool nice great fine lovely awesome amazing funny weird busy
  tired hungry coffee lunch dinner breakfast pizza beer wine cake party birthday holiday
  trip flight hotel beach mountain park walk run gym match game film movie show book music
  song photo picture video call message phone meeting project deadline email plan idea
  question answer problem news weather rain sun snow cold warm hot kids dog cat mum dad
  brother sister friend everyone someone something nothing anything need want love miss see
  look find bring take make come leave stay wait meet send check try remember forget pick
  drop open close start finish book pay buy sell cook clean fix help tell ask say talk
  hear watch read write bought made sent saw told heard left got came went had been
  done ready free happy excited worried back over here there where when why how which who
  yes no yeah yep nope lol haha omg btw tbh idk
`);

const PHRASES = [
  'ok', 'Ok 👍', 'sounds good', 'See you soon!', 'on my way', 'Running 10 min late, sorry!',
  'haha', 'lol', 'Thanks! 🙏', 'yes!!', 'nope', 'Good morning ☀️', 'Good night 😴',
  'can you call me?', 'Where are you?', 'Just landed ✈️', 'Happy birthday!!! 🎉🎂',
  'Miss you ❤️', 'Sure, why not', 'Let me check', 'done ✅', 'brb', 'Congrats! 🥳',
  'What time?', 'I’m outside', 'Did you see this?', 'no worries', '👀', 'Same here',
];

const PHRASES_PT = [
  'Bom dia! ☀️', 'Saudades ❤️', 'Quando vocês vêm?', 'Obrigada!', 'Beijos 😘',
  'Já chegaste?', 'Parabéns, querida! 🎉', 'O almoço está pronto 🍲', 'Até já', 'Que lindo!',
];

export const EMOJI = [
  '😂', '❤️', '👍', '😊', '🙏', '😍', '😭', '🎉', '🔥', '😅', '🤔', '👀', '💪', '✨', '😎',
  '🥳', '🙈', '👋🏽', '👍🏻', '🤷‍♀️', '🤦‍♂️', '👨‍👩‍👧', '🏳️‍🌈', '☕', '🍕', '⚽', '🌧️', '🐶',
];

function sentence(rng: Rng, minWords: number, maxWords: number): string {
  const count = rng.int(minWords, maxWords);
  const parts: string[] = [];
  for (let i = 0; i < count; i++) parts.push(rng.pick(WORDS));
  const text = parts.join(' ');
  const end = rng.pick(['.', '.', '!', '?', '', '...']);
  return text.charAt(0).toUpperCase() + text.slice(1) + end;
}

function emoji(rng: Rng, count: number): string {
  let text = '';
  for (let i = 0; i < count; i++) text += rng.pick(EMOJI);
  return text;
}

/**
 * A chat message body: mostly short, sometimes long, multi-line, emoji-only or a link.
 * `portuguese` mixes in Portuguese phrases (the family group).
 */
export function messageBody(rng: Rng, portuguese = false): string {
  if (portuguese && rng.chance(0.4)) return rng.pick(PHRASES_PT);
  const roll = rng.float();
  if (roll < 0.25) return rng.pick(PHRASES);
  if (roll < 0.75) {
    const text = sentence(rng, 3, 15);
    return rng.chance(0.2) ? `${text} ${emoji(rng, rng.int(1, 2))}` : text;
  }
  if (roll < 0.85) {
    const sentences: string[] = [];
    for (let i = rng.int(2, 6); i > 0; i--) sentences.push(sentence(rng, 5, 14));
    return sentences.join(' ');
  }
  if (roll < 0.91) {
    const bullet = rng.chance(0.5) ? '- ' : '';
    const lines: string[] = [];
    for (let i = rng.int(2, 5); i > 0; i--) lines.push(bullet + sentence(rng, 1, 8));
    return lines.join('\n');
  }
  if (roll < 0.96) return emoji(rng, rng.int(1, 3));
  return `${sentence(rng, 2, 6)} https://example.com/${rng.pick(WORDS)}-${rng.pick(WORDS)}?id=${rng.uint32().toString(36)}`;
}
