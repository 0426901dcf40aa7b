// An artist's page: the name, the picture (the artist's own image set), what
// enrichment found on MusicBrainz (when it matched), and the artist's videos.
"use strict";
import {api} from "./api.js";
import {el, startPage} from "./shell.js";
import {VideoGrid} from "./video-grid.js";

const IMAGE_SIZES = "(max-width: 40rem) 5.5rem, 8rem";
const MBID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

function artistId() {
  const match = location.pathname.match(/^\/library\/artists\/([0-9]+)$/);
  return match ? Number(match[1]) : null;
}

/** No picture yet: the initial of the name on a neutral square. */
function placeholder(artist) {
  const initial = Array.from(String(artist.name || "?").trim())[0] || "?";
  return el("span", {className: "artist-picture thumb-placeholder", "aria-hidden": "true"}, initial.toUpperCase());
}

/** The image set as a srcset of its WebP files (the widths the server made). */
function picture(artist) {
  const widths = Object.keys(artist.images || {}).map(Number).filter((w) => Number.isInteger(w) && w > 0).sort((a, b) => a - b);
  const webp = widths.filter((width) => artist.images[String(width)] && artist.images[String(width)].webp);
  if (!webp.length) return placeholder(artist);
  const id = Number(artist.id);
  const fallback = webp.find((width) => width >= 256) || webp[webp.length - 1];
  const img = el("img", {
    className: "artist-picture",
    src: `/artists/${id}/image/${fallback}.webp`,
    srcset: webp.map((width) => `/artists/${id}/image/${width}.webp ${width}w`).join(", "),
    sizes: IMAGE_SIZES,
    alt: "",
    width: 128,
    height: 128,
  });
  img.addEventListener("error", () => img.replaceWith(placeholder(artist)), {once: true});
  return img;
}

function fact(list, term, value) {
  if (value === null || value === undefined || value === "") return;
  list.append(el("dt", {}, term), el("dd", {}, value));
}

function showArtist(artist) {
  document.title = `${artist.name} · vidfleet`;
  const header = document.getElementById("artist");
  header.prepend(picture(artist));
  header.removeAttribute("aria-busy");
  document.getElementById("artist-name").textContent = artist.name;
  const facts = document.getElementById("artist-facts");
  fact(facts, "Known as", artist.disambiguation);
  fact(facts, "Country", artist.country);
  fact(facts, "Since", Number.isInteger(artist.begin_year) ? String(artist.begin_year) : null);
  const genres = (artist.genres || []).filter((genre) => typeof genre === "string");
  if (genres.length) {
    facts.append(el("dt", {}, "Genres"), el("dd", {}, el("ul", {className: "genres"}, ...genres.map((genre) => el("li", {}, genre)))));
  }
  if (typeof artist.mbid === "string" && MBID.test(artist.mbid)) {
    fact(facts, "MusicBrainz", el("a", {
      href: `https://musicbrainz.org/artist/${artist.mbid}`, rel: "noreferrer noopener", target: "_blank",
    }, artist.mbid));
  }
}

(async () => {
  await startPage("/library");
  const id = artistId();
  const status = document.getElementById("artist-status");
  let artist;
  try {
    artist = await api(`/api/artists/${id}`);
  } catch (error) {
    document.getElementById("artist").removeAttribute("aria-busy");
    status.classList.add("error");
    status.textContent = error.status === 404 && error.code === "not_found"
      ? "There is no such artist in the library."
      : [404, 501, 503].includes(error.status) ? "Artists are not available right now." : error.message;
    document.getElementById("videos-heading").parentElement.hidden = true;
    return;
  }
  showArtist(artist);
  const grid = new VideoGrid({
    list: document.getElementById("videos"),
    more: document.getElementById("more"),
    status: document.getElementById("library-status"),
  });
  await grid.show({artist_id: String(id), sort: "title"}, "This artist has no videos in the library.");
})();
