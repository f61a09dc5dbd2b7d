//! A voice note's length, read from its container by Symphonia's demuxers (Ogg, WebM/Matroska, MP4, MP3): the
//! container's stated duration when it has one, otherwise the end of its last packet (browsers' WebM recordings
//! state none). Nothing is decoded. Pure over a reader, no I/O of its own.

use std::time::Duration;

use symphonia::core::formats::probe::Hint;
use symphonia::core::formats::{FormatOptions, TrackType};
use symphonia::core::io::{MediaSource, MediaSourceStream};
use symphonia::core::meta::MetadataOptions;
use symphonia::core::units::Duration as Ticks;

/// Most packets read to find the end of a recording that does not state its length: at 20 ms a packet, far
/// more than any accepted voice note holds (a bound on the work a hostile file can cause).
const MAX_PACKETS: usize = 200_000;

/// The length of the audio in `source` (a file, or bytes in a `Cursor`), or `None` when it is not audio these
/// demuxers read or its length cannot be told. `extension` is a hint to the probe (`ogg`, `weba`, `m4a`, `mp3`).
pub fn duration(source: Box<dyn MediaSource>, extension: &str) -> Option<Duration> {
    let source = MediaSourceStream::new(source, Default::default());
    let mut hint = Hint::new();
    hint.with_extension(extension);
    let mut format = symphonia::default::get_probe()
        .probe(&hint, source, FormatOptions::default(), MetadataOptions::default())
        .ok()?;
    let track = format.default_track(TrackType::Audio)?.clone();
    let time_base = track.time_base?;
    if let Some(stated) = track.duration.filter(|d| d.get() > 0) {
        return Some(Duration::from_secs_f64(time_base.calc_duration(stated)?.as_secs_f64()));
    }
    let mut end: Option<i64> = None;
    for _ in 0..MAX_PACKETS {
        match format.next_packet() {
            Ok(Some(p)) if p.track_id == track.id => {
                let last = p.pts.get().saturating_add(p.dur.get() as i64);
                end = Some(end.map_or(last, |e| e.max(last)));
            }
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(_) => break,
        }
    }
    let ticks = end?.saturating_sub(track.start_ts.get()).max(0) as u64;
    let time = time_base.calc_duration(Ticks::from(ticks))?;
    Some(Duration::from_secs_f64(time.as_secs_f64().max(0.0)))
}
