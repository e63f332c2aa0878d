"""The I/O conventions of the four MLPerf Tiny v0.5 reference firmwares.

Every number here was read off the reference firmware the board ran
(mlcommons/tiny ``benchmark/reference_submissions/<dir>/``: ``api/submitter_implemented.h``
for ``MAX_DB_INPUT_SIZE`` and ``TH_MODEL_VERSION``, ``submitter_implemented.cpp`` for
``kTensorArenaSize``, the baud rates, ``th_load_tensor()`` and ``th_results()``, and
the ``*_model_settings.h`` headers for the element counts). The v0.5 firmware is
identical to master's reference submissions except for license headers, and the
model arrays compiled into it (``kws_model_data.cc``, ``ic_model_quant_data.cc``,
``model.cc``) are byte-identical to the published ``.tflite`` files whose md5 is
recorded below.
"""
from __future__ import annotations

from dataclasses import dataclass

# How th_load_tensor() turns the bytes of the db buffer into the model's input tensor.
CONVERT_COPY_INT8 = "copy-int8"  # kws01: int8 copied as is
CONVERT_UINT8_MINUS_128 = "uint8-minus-128"  # ic01: uint8 -> int8, two branches
CONVERT_INT8_MINUS_128 = "int8-minus-128"  # vww01: input[i] -= 128 in int8
CONVERT_QUANTIZE_FLOAT32 = "quantize-float32"  # ad01: QuantizeFloatToInt8 of LE float32

# How th_results() prints.
RESULTS_KWS_DIGITS = "kws-digits"  # "0.%d" (int)(f*10), "%d" (int)(f*100)%10, "%d" (int)(f*1000)%10
RESULTS_PRINTF_F = "printf-f"  # th_printf("%0.3f") per class, mbed minimal printf
RESULTS_MSE = "mse"  # ad01: th_printf("m-results-[%0.3f]\r\n", mean squared error)


@dataclass(frozen=True)
class IOProfile:
    """What one reference firmware expects of its model and prints back."""

    name: str  # 'kws01'
    model_version: str  # what `profile` prints in m-model-[...] (TH_MODEL_VERSION)
    max_db_input_size: int  # MAX_DB_INPUT_SIZE: bytes the db buffer holds
    input_count: int  # elements th_load_tensor() asks ee_get_buffer() for
    input_elem_size: int  # bytes per element in the db buffer (4 for ad01's float32)
    arena_size: int  # kTensorArenaSize
    perf_baud: int  # UART baud in performance mode (EE_CFG_ENERGY_MODE == 0)
    energy_baud: int  # UART baud in energy mode, behind the IO manager
    official_md5: str  # md5 of the official .tflite (and of the array in the firmware)
    num_outputs: int  # values in the m-results-[...] line
    model_output_count: int  # output-tensor elements th_results() reads
    input_shape: tuple[int, ...]  # the official model's input tensor shape
    conversion: str  # one of the CONVERT_* constants
    results_format: str  # one of the RESULTS_* constants
    results_loop_count: int  # the `nresults` the comma test of th_results() uses
    ops: tuple[str, ...]  # builtin ops the firmware's MicroMutableOpResolver registers
    firmware_dir: str  # benchmark/reference_submissions/<firmware_dir>
    upstream_path: str  # the official model in mlcommons/tiny

    @property
    def input_bytes(self) -> int:
        """Bytes th_load_tensor() takes from the db buffer."""
        return self.input_count * self.input_elem_size


_KWS_VWW_OPS = (
    "FULLY_CONNECTED",
    "CONV_2D",
    "DEPTHWISE_CONV_2D",
    "RESHAPE",
    "SOFTMAX",
    "AVERAGE_POOL_2D",
)

PROFILES: dict[str, IOProfile] = {
    "kws01": IOProfile(
        name="kws01",
        model_version="kws01",
        max_db_input_size=49 * 10 * 1,
        input_count=49 * 10 * 1,
        input_elem_size=1,
        arena_size=200 * 1024,
        perf_baud=115200,
        energy_baud=9600,
        official_md5="618aeb155673dae92fa6a7f26608add5",
        num_outputs=12,
        model_output_count=12,
        input_shape=(1, 49, 10, 1),
        conversion=CONVERT_COPY_INT8,
        results_format=RESULTS_KWS_DIGITS,
        results_loop_count=12,
        ops=_KWS_VWW_OPS,
        firmware_dir="keyword_spotting",
        upstream_path="benchmark/training/keyword_spotting/trained_models/kws_ref_model.tflite",
    ),
    "vww01": IOProfile(
        name="vww01",
        model_version="vww01",
        max_db_input_size=96 * 96 * 3,
        input_count=96 * 96 * 3,
        input_elem_size=1,
        arena_size=200 * 1024,
        perf_baud=115200,
        energy_baud=9600,
        official_md5="f0b011416abee0343a5d130cb1f4c18f",
        num_outputs=2,
        model_output_count=2,
        input_shape=(1, 96, 96, 3),
        conversion=CONVERT_INT8_MINUS_128,
        results_format=RESULTS_PRINTF_F,
        # th_results() compares with nresults - 1 where nresults = 3 but prints
        # kCategoryCount = 2 classes, hence the trailing comma on the board.
        results_loop_count=3,
        ops=_KWS_VWW_OPS,
        firmware_dir="person_detection",
        upstream_path="benchmark/training/visual_wake_words/trained_models/vww_96_int8.tflite",
    ),
    "ic01": IOProfile(
        name="ic01",
        model_version="ic01",
        max_db_input_size=32 * 32 * 3,
        input_count=32 * 32 * 3,
        input_elem_size=1,
        arena_size=100 * 1024,
        perf_baud=115200,
        energy_baud=9600,
        official_md5="2d6dd48722471313e4c4528249205ae3",
        num_outputs=10,
        model_output_count=10,
        input_shape=(1, 32, 32, 3),
        conversion=CONVERT_UINT8_MINUS_128,
        results_format=RESULTS_PRINTF_F,
        results_loop_count=10,
        ops=("ADD",) + _KWS_VWW_OPS,
        firmware_dir="image_classification",
        upstream_path="benchmark/training/image_classification/trained_models/pretrainedResnet_quant.tflite",
    ),
    "ad01": IOProfile(
        name="ad01",
        model_version="ad01",
        # a 5-slice x 128-bin float32 window, doubled: the buffer holds 5120 bytes...
        max_db_input_size=5 * 128 * 4 * 2,
        # ...but th_load_tensor() takes kInputSize = 640 floats (2560 bytes).
        input_count=5 * 128,
        input_elem_size=4,
        arena_size=10 * 1024,
        perf_baud=921600,
        energy_baud=9600,
        official_md5="361fa1b1b871e2068b2ab38d9805ef56",
        num_outputs=1,
        model_output_count=5 * 128,
        input_shape=(1, 640),
        conversion=CONVERT_QUANTIZE_FLOAT32,
        results_format=RESULTS_MSE,
        results_loop_count=1,
        ops=("FULLY_CONNECTED", "QUANTIZE", "DEQUANTIZE"),
        firmware_dir="anomaly_detection",
        upstream_path="benchmark/training/anomaly_detection/trained_models/ad01_int8.tflite",
    ),
}


def get_profile(name: str) -> IOProfile:
    """The profile called ``name``; KeyError names the valid ones."""
    try:
        return PROFILES[name]
    except KeyError:
        raise KeyError(f"unknown I/O profile {name!r}; valid: {', '.join(PROFILES)}") from None
