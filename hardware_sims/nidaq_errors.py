"""DAQmx errors as the NI-DAQmx emulator reports them: the code, NI's description, the details.

Codes and their names are those of ``nidaqmx.error_codes.DAQmxErrors``; the descriptions paraphrase
NI-DAQmx's own (sent as the gRPC abort details and answered by ``GetErrorString``).
"""

from __future__ import annotations

from nidaqmx.error_codes import DAQmxErrors as Err

ERROR_TEXT = {
    Err.DEV_CANNOT_BE_ACCESSED: "Device cannot be accessed. Possible causes: device is no longer present "
                                "in the system, device is not powered, device is powered but was "
                                "temporarily without power.",
    Err.SAMPLES_NOT_YET_AVAILABLE: "Some or all of the samples requested have not yet been acquired.",
    Err.SAMPLES_WILL_NEVER_BE_AVAILABLE: "Attempted to read samples that will never be available.",
    Err.SAMPLES_CAN_NOT_YET_BE_WRITTEN: "Some or all of the samples to write could not be written to "
                                        "the buffer yet. More space will free up as samples currently "
                                        "in the buffer are generated.",
    Err.GEN_STOPPED_TO_PREVENT_REGEN_OF_OLD_SAMPLES: "Generation was stopped to prevent the "
                                                    "regeneration of old samples.",
    Err.INVALID_AO_DATA_WRITE: "Attempted writing analog data that is too large or too small.",
    Err.PHYSICAL_CHAN_DOES_NOT_EXIST: "Physical channel specified does not exist on this device.",
    Err.INVALID_DEVICE_ID: "Device identifier is invalid.",
    Err.INVALID_TASK: "Task specified is invalid or does not exist.",
    Err.DUPLICATE_TASK: "Task name specified conflicts with an existing task name.",
    Err.CHAN_NOT_IN_TASK: "Specified channel is not in the task.",
    Err.INVALID_CHANNEL_NAME_IN_LIST: "Channel name specified is not valid.",
    Err.ATTR_NOT_SUPPORTED: "Specified property is not supported by the device or is not applicable "
                            "to the task.",
    Err.ATTR_CANNOT_BE_SET: "Specified property cannot be set.",
    Err.INVALID_ATTRIBUTE_VALUE: "Requested value is not a supported value for this property. The "
                                 "property value may be invalid because it conflicts with another "
                                 "property.",
    Err.MIN_NOT_LESS_THAN_MAX: "Minimum is not less than the maximum.",
    Err.PRPTY_GET_SPECD_ACTIVE_CHAN_FAILED_DUE_TO_DIFFT_VALS: "Cannot get property value for the "
                                                             "specified channels: the value is "
                                                             "different for some of them.",
    Err.INVALID_ROUTING_SOURCE_TERMINAL_NAME: "Source terminal to be routed could not be found on "
                                              "the device.",
    Err.READ_BUFFER_TOO_SMALL: "Buffer is too small to fit the requested samples.",
    Err.SAMPLES_NO_LONGER_AVAILABLE: "Attempted to read samples that are no longer available. The "
                                     "requested sample was previously available, but has since been "
                                     "overwritten.",
    Err.PAL_MEMORY_FULL: "The requested memory could not be allocated.",
    Err.PAL_RESOURCE_RESERVED: "The specified resource is reserved. The operation could not be "
                               "completed as specified.",
    Err.OUTPUT_BUFFER_EMPTY: "Generation cannot be started because the output buffer is empty.",
    Err.WAIT_UNTIL_DONE_DOES_NOT_INDICATE_DONE: "Wait Until Done did not indicate that the task was "
                                                "done within the specified timeout.",
    Err.CAN_NOT_PERFORM_OP_WHILE_TASK_RUNNING: "Specified operation cannot be performed while the "
                                              "task is running.",
    Err.EVERY_N_SAMPS_EVENT_INTERVAL_ZERO_NOT_SUPPORTED: "Every N Samples event interval of zero is "
                                                         "not supported.",
    Err.EVERY_N_SAMPS_ACQ_INTO_BUFFER_NOT_FOR_OUTPUT: "Every N Samples Acquired Into Buffer event is "
                                                      "not supported for output tasks.",
    Err.EVERY_N_SAMPS_TRANSFERRED_FROM_BUFFER_NOT_FOR_INPUT: "Every N Samples Transferred From "
                                                             "Buffer event is not supported for "
                                                             "input tasks.",
    Err.EVERY_N_SAMPS_EVENT_ALREADY_REGISTERED: "Every N Samples event is already registered for "
                                                "this task.",
    Err.DONE_EVENT_ALREADY_REGISTERED: "Done event is already registered for this task.",
    Err.INVALID_TIMEOUT_VAL: "Timeout value is invalid.",
}
"""DAQmx error descriptions (paraphrased from NI's), sent as the abort details and by GetErrorString."""


class DaqFault(Exception):
    """A DAQmx error the emulated device reports; ``code`` is negative."""

    def __init__(self, code: Err, detail: str = "", samps_per_chan_written: int | None = None):
        self.code = int(code)
        self.samps_per_chan_written = samps_per_chan_written  # a write that moved some samples
        text = ERROR_TEXT.get(code, code.name)
        super().__init__(f"{text}\n{detail}".strip())

    def metadata(self) -> tuple[tuple[str, str], ...]:
        """The trailing metadata NI's server sends with the abort (the client reads the write count)."""
        extra = () if self.samps_per_chan_written is None else \
            (("ni-samps-per-chan-written", str(self.samps_per_chan_written)),)
        return (("ni-error", str(self.code)),) + extra
