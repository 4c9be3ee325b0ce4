//! One slide's trip: tissue found on a low-resolution level ([`tissue`]), restricted to a
//! region of interest ([`roi`]), cut into the model's tiles ([`plan`]), the tiles' stored
//! JPEG data gathered for a device decoder ([`jpeg_tiles`]), then both stages of the model
//! ([`pipeline`]), or the tile encoder alone for features ([`embed`]).

pub mod decoder_check;
pub mod embed;
pub mod jpeg_tiles;
pub mod pipeline;
pub mod plan;
pub mod roi;
pub mod tissue;
