/* synth_render: the synthetic face model of ft-synth (docs/tools.md, "The synthetic image model").
 *
 * An identity is a set of shapes drawn from a per-class random stream: face oval, skin tone,
 * hair, eyes, brows, nose, mouth, ears, clothing, optional glasses/beard, a few coloured marks
 * and a stripe texture. A sample redraws that identity with per-sample nuisance (shift,
 * rotation, scale, expression, lighting, brightness/contrast, background, occluder, pixel
 * noise) whose strength scales with `nuisance` in [0, 1]. Every image is a pure function of
 * (seed, class, sample, nuisance, size), so the thread count never changes the output.
 */
#ifndef FT_SYNTH_RENDER_H
#define FT_SYNTH_RENDER_H

#include <stdint.h>

#define SYNTH_MIN_SIZE 32
#define SYNTH_MAX_SIZE 1024

/* Render one RGB image, size x size, HWC uint8, into rgb (size*size*3 bytes). */
void synth_render(uint64_t seed, uint64_t cls, uint64_t sample, double nuisance, int size,
                  uint8_t *rgb);

#endif
